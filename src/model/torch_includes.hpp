// The torch headers libcocola uses, and nothing more: this file is the precompiled header of every torch
// translation unit. Only API present in both LibTorch 1.13 (Debian) and 2.x is used.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/optim/adam.h>
#include <torch/serialize.h>
#include <torch/types.h>
#include <torch/utils.h>
