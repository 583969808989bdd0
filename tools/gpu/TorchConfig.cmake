# Fallback used only if the wheel's own TorchConfig.cmake fails: links the wheel's libraries directly.
if(NOT TORCH_PY_ROOT)
  message(FATAL_ERROR "torch shim: pass -DTORCH_PY_ROOT=<site-packages/torch>")
endif()
add_library(torch_shim INTERFACE IMPORTED)
set_target_properties(torch_shim PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${TORCH_PY_ROOT}/include;${TORCH_PY_ROOT}/include/torch/csrc/api/include"
  INTERFACE_COMPILE_DEFINITIONS "_GLIBCXX_USE_CXX11_ABI=${TORCH_CXX11_ABI}"
  INTERFACE_LINK_LIBRARIES "-Wl,--no-as-needed;${TORCH_PY_ROOT}/lib/libtorch_cuda.so;${TORCH_PY_ROOT}/lib/libc10_cuda.so;-Wl,--as-needed;${TORCH_PY_ROOT}/lib/libtorch.so;${TORCH_PY_ROOT}/lib/libtorch_cpu.so;${TORCH_PY_ROOT}/lib/libc10.so;-Wl,-rpath,${TORCH_PY_ROOT}/lib")
set(TORCH_LIBRARIES torch_shim)
set(Torch_FOUND TRUE)
