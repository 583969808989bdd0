// The Python module `cocola` (pybind11): the library's own functions for scripts and notebooks, no second
// implementation. Arrays in and out are numpy; every cocola::Error becomes cocola.Error with the CLI's message.
// The GIL is released while the library computes; long calls check for Ctrl-C between their steps.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cocola/audio.hpp"
#include "cocola/componet.hpp"
#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/evaluate.hpp"
#include "cocola/features.hpp"
#include "cocola/generate.hpp"
#include "cocola/model.hpp"
#include "cocola/paths.hpp"
#include "cocola/runtime.hpp"
#include "cocola/score.hpp"

namespace py = pybind11;
using namespace cocola;

namespace {

void set_threads_if_given(const std::optional<int>& threads) {
    if (threads) runtime::set_threads(*threads);
}

// Audio warnings (audio::warn) raised while this thread decodes for a Python call are collected and re-raised as
// Python warnings once the GIL is back; those from other threads (e.g. indexing a dataset) go to stderr.
thread_local std::vector<std::string>* collected_warnings = nullptr;
struct CollectWarnings {
    std::vector<std::string> messages;
    CollectWarnings() { collected_warnings = &messages; }
    ~CollectWarnings() { collected_warnings = nullptr; }
};

void warn(const std::string& message);

bool is_path_like(const py::handle& h) {
    return py::isinstance<py::str>(h) || py::hasattr(h, "__fspath__");
}
std::string fspath(const py::handle& h) { return py::str(py::module_::import("os").attr("fspath")(h)); }
// None, or a str / os.PathLike naming a file.
std::optional<std::string> optional_path(const py::object& o, const char* what) {
    if (o.is_none()) return std::nullopt;
    if (!is_path_like(o)) throw py::type_error(std::string(what) + ": expected a path (str or os.PathLike) or None");
    return fspath(o);
}

// Audio from Python: a file path (decoded as the CLI does) or a float32/float64 array, mono [samples] or
// [channels, samples] at `sr` Hz, averaged to mono and resampled to 16 kHz as the CLI does a file. `what` names the
// argument in errors.
std::vector<float> mono_16k(const py::handle& obj, int sr, const std::string& what) {
    if (is_path_like(obj)) {
        const std::string path = fspath(obj);
        CollectWarnings collect;
        std::vector<float> x;
        {
            py::gil_scoped_release release;
            x = audio::load_mono(path);
        }
        for (const auto& w : collect.messages) warn(w);
        return x;
    }
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(what + ": expected a numpy array of samples or a file path, got " +
                             py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
    auto arr = py::reinterpret_borrow<py::array>(obj);
    const auto dtype = arr.dtype();
    if (dtype.kind() != 'f' || (dtype.itemsize() != 4 && dtype.itemsize() != 8))
        throw py::type_error(what + ": dtype " + std::string(py::str(static_cast<const py::handle&>(dtype))) +
                             " is not supported: give float32 or float64 samples in [-1, 1] (e.g. x.astype(np.float32) / 32768 "
                             "for int16)");
    if (arr.ndim() != 1 && arr.ndim() != 2)
        throw py::value_error(what + ": expected shape [samples] or [channels, samples], got " + std::to_string(arr.ndim()) +
                              " dimensions");
    const long long channels = arr.ndim() == 2 ? arr.shape(0) : 1;
    const long long frames = arr.ndim() == 2 ? arr.shape(1) : arr.shape(0);
    if (arr.ndim() == 2 && channels > frames)
        throw py::value_error(what + ": shape (" + std::to_string(channels) + ", " + std::to_string(frames) +
                              ") has more channels than samples: audio is [channels, samples] (pass x.T for "
                              "[samples, channels] arrays such as soundfile's)");
    if (channels > 1024) throw py::value_error(what + ": " + std::to_string(channels) + " channels is too many");
    // Float64 is rounded to float32 first, as writing it to a float WAV would: the same numbers as the CLI on that file.
    auto f32 = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(arr);
    if (!f32) throw py::error_already_set();
    const float* data = f32.data();
    py::gil_scoped_release release;
    return audio::mono_from_planar(data, static_cast<int>(channels), frames, sr, what);
}

std::vector<std::vector<float>> mono_16k_list(const py::handle& seq, int sr, const std::string& what) {
    if (py::isinstance<py::array>(seq) || is_path_like(seq) || !py::isinstance<py::sequence>(seq))
        throw py::type_error(what + ": expected a list of arrays or file paths");
    std::vector<std::vector<float>> out;
    size_t i = 0;
    for (const auto& item : seq) out.push_back(mono_16k(item, sr, what + "[" + std::to_string(i++) + "]"));
    return out;
}

py::array_t<float> to_numpy(const at::Tensor& t_in) {
    at::Tensor t = t_in.to(at::kFloat).contiguous().cpu();
    std::vector<py::ssize_t> shape(t.sizes().begin(), t.sizes().end());
    py::array_t<float> out(shape);
    std::memcpy(out.mutable_data(), t.data_ptr<float>(), sizeof(float) * static_cast<size_t>(t.numel()));
    return out;
}

void warn(const std::string& message) {
    if (PyErr_WarnEx(PyExc_UserWarning, message.c_str(), 2) != 0) throw py::error_already_set();
}

// Called from library loops with the GIL released: lets Ctrl-C stop them and reports progress.
struct Interruptible {
    std::function<void(size_t, size_t)> user;
    void operator()(size_t done, size_t total) const {
        py::gil_scoped_acquire acquire;
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        if (user) user(done, total);
    }
};

struct PyModel {
    std::string path;
    std::shared_ptr<model::Model> model;

    PyModel(const py::object& given, std::optional<int> threads) : PyModel(optional_path(given, "Model"), threads) {}
    PyModel(const std::optional<std::string>& given, std::optional<int> threads) {
        set_threads_if_given(threads);
        path = given ? *given : paths::default_cocola_model();
        if (path.empty())
            throw Error("no model given and no default model found (models/cocola_default.safetensors next to the "
                        "build or the sources, or $COCOLA_MODEL): pass cocola.Model(\"MODEL.safetensors\")");
        py::gil_scoped_release release;
        model = std::make_shared<model::Model>(model::Model::load(path));
    }

    eval::ScoreOptions options(const std::string& mode, double hop, bool whole) const {
        eval::ScoreOptions o;
        o.mode = model::parse_mode(mode);
        o.hop_seconds = hop;
        o.whole = whole;
        eval::check_score_options(*model, o);
        return o;
    }

    py::array_t<float> embed(const py::object& audio, int sr, const std::string& mode, double hop, bool whole,
                             std::optional<int> threads) {
        set_threads_if_given(threads);
        const auto o = options(mode, hop, whole);
        const std::string name = is_path_like(audio) ? fspath(audio) : "audio";
        std::vector<std::vector<float>> clips{mono_16k(audio, sr, "audio")};
        std::vector<eval::Embedded> e;
        {
            py::gil_scoped_release release;
            e = eval::embed_clips(*model, clips, o);
        }
        for (const auto& w : e[0].warnings) warn(name + ": " + w);
        if (!e[0].error.empty()) throw Error(name + ": " + e[0].error);
        return to_numpy(e[0].embeddings);
    }

    py::object score(const py::object& cond, const py::object& acc, int sr, const std::string& mode, bool per_window,
                     double hop, bool whole, std::optional<int> threads) {
        set_threads_if_given(threads);
        const auto o = options(mode, hop, whole);
        eval::ClipPair pair;
        pair.cond = is_path_like(cond) ? fspath(cond) : "cond";
        pair.acc = is_path_like(acc) ? fspath(acc) : "acc";
        pair.cond_audio = mono_16k(cond, sr, "cond");
        pair.acc_audio = mono_16k(acc, sr, "acc");
        std::vector<eval::PairScore> r;
        {
            py::gil_scoped_release release;
            std::vector<eval::ClipPair> pairs;
            pairs.push_back(std::move(pair));
            r = eval::score_clip_pairs(*model, std::move(pairs), o);
        }
        for (const auto& w : r[0].warnings) warn(w);
        if (!r[0].error.empty()) throw Error(r[0].error);
        if (!per_window) return py::float_(r[0].score);
        py::array_t<double> windows(static_cast<py::ssize_t>(r[0].window_scores.size()));
        std::copy(r[0].window_scores.begin(), r[0].window_scores.end(), windows.mutable_data());
        return py::make_tuple(r[0].score, windows);
    }

    py::array_t<double> score_matrix(const py::object& conds, const py::object& accs, int sr, const std::string& mode,
                                     double hop, bool whole, std::optional<int> threads) {
        set_threads_if_given(threads);
        const auto o = options(mode, hop, whole);
        auto names = [](const py::object& seq, const std::string& what) {
            std::vector<std::string> n;
            size_t i = 0;
            for (const auto& item : seq) {
                n.push_back(is_path_like(item) ? fspath(item) : what + "[" + std::to_string(i) + "]");
                ++i;
            }
            return n;
        };
        auto c = mono_16k_list(conds, sr, "conds");
        auto a = mono_16k_list(accs, sr, "accs");
        if (c.empty() || a.empty()) throw py::value_error("score_matrix: conds and accs must not be empty");
        const auto cn = names(conds, "conds"), an = names(accs, "accs");
        eval::ScoreMatrix m;
        {
            py::gil_scoped_release release;
            m = eval::score_matrix_clips(*model, cn, c, an, a, o);
        }
        for (const auto& w : m.warnings) warn(w);
        if (!m.errors.empty()) throw Error(m.errors.front());
        py::array_t<double> out({static_cast<py::ssize_t>(c.size()), static_cast<py::ssize_t>(a.size())});
        auto v = out.mutable_unchecked<2>();
        for (size_t i = 0; i < c.size(); ++i)
            for (size_t j = 0; j < a.size(); ++j) v(i, j) = m.scores[i][j];
        return out;
    }
};

py::array_t<float> features_of(const py::object& audio, int sr, const std::string& frontend_name,
                               std::optional<int> threads) {
    set_threads_if_given(threads);
    const auto frontend = features::parse_frontend(frontend_name);
    const std::string name = is_path_like(audio) ? fspath(audio) : "audio";
    auto x = mono_16k(audio, sr, "audio");
    std::vector<float> f;
    {
        py::gil_scoped_release release;
        try {
            f = features::compute(frontend, x.data(), x.size());
        } catch (const Error& e) {
            throw Error(name + ": " + e.what());
        }
    }
    py::array_t<float> out({static_cast<py::ssize_t>(features::num_channels(frontend)),
                            static_cast<py::ssize_t>(features::kNMels),
                            static_cast<py::ssize_t>(features::num_frames(x.size()))});
    std::memcpy(out.mutable_data(), f.data(), sizeof(float) * f.size());
    return out;
}

py::tuple load_audio(const py::object& path) {
    if (!is_path_like(path)) throw py::type_error("load_audio: expected a file path");
    const std::string p = fspath(path);
    std::vector<float> x;
    CollectWarnings collect;
    {
        py::gil_scoped_release release;
        x = audio::load_mono(p);
    }
    for (const auto& w : collect.messages) warn(w);
    py::array_t<float> out(static_cast<py::ssize_t>(x.size()));
    std::memcpy(out.mutable_data(), x.data(), sizeof(float) * x.size());
    return py::make_tuple(out, audio::kSampleRate);
}

py::object eval_accuracy(const py::object& model_arg, const py::object& data, int k, const std::string& split,
                         const std::string& mode, uint64_t seed, const py::object& cache_dir_arg,
                         const std::function<void(size_t, size_t)>& progress, std::optional<int> threads) {
    set_threads_if_given(threads);
    const auto cache_dir = optional_path(cache_dir_arg, "cache_dir");
    std::shared_ptr<PyModel> m;
    if (model_arg.is_none()) m = std::make_shared<PyModel>(std::optional<std::string>(), std::nullopt);
    else if (py::isinstance<PyModel>(model_arg)) m = model_arg.cast<std::shared_ptr<PyModel>>();
    else if (is_path_like(model_arg)) m = std::make_shared<PyModel>(std::optional<std::string>(fspath(model_arg)), std::nullopt);
    else throw py::type_error("eval_accuracy: model must be a cocola.Model, a path or None");
    std::vector<std::string> inputs;
    if (is_path_like(data)) inputs.push_back(fspath(data));
    else
        for (const auto& d : data) inputs.push_back(fspath(d));
    if (inputs.empty()) throw py::value_error("eval_accuracy: no data given");
    if (k < 2) throw py::value_error("eval_accuracy: k must be at least 2");

    eval::EvalOptions eo;
    eo.k = k;
    eo.split = split;
    eo.mode = model::parse_mode(mode);
    eo.seed = seed;
    const std::string cache_parent = cache_dir ? *cache_dir : data::default_cache_dir();
    Interruptible tick{progress};
    std::vector<eval::TableDataset> sets;
    std::vector<std::vector<eval::TableCell>> cells(1);
    {
        py::gil_scoped_release release;
        std::vector<std::unique_ptr<data::StemCache>> caches;
        std::vector<std::string> names;
        for (const auto& input : inputs) {
            caches.push_back(std::make_unique<data::StemCache>(data::ensure_cache(input, cache_parent)));
            sets.push_back(eval::describe_test_set(input, *caches.back(), eo));
            names.push_back(sets.back().name);
        }
        names = eval::unique_names(names);
        size_t total = 0, base = 0;
        for (size_t i = 0; i < sets.size(); ++i) {
            sets[i].name = names[i];
            total += sets[i].batches;
        }
        for (size_t i = 0; i < sets.size(); ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            eval::TableCell c;
            c.result = eval::evaluate(*m->model, *caches[i], eo, [&](size_t done, size_t) { tick(base + done, total); });
            c.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            cells[0].push_back(c);
            base += sets[i].batches;
        }
    }
    const std::vector<eval::TableModel> models{{std::filesystem::path(m->path).stem().string(), m->path, m->model->config()}};
    const auto j = eval::accuracy_table_json(eo, models, sets, cells);
    return py::module_::import("json").attr("loads")(j.dump());
}

// A CompoNet with its VAE, vocoder and judge, loaded once for many generate() calls.
struct PyGenerator {
    std::unique_ptr<componet::Componet> net;
    std::unique_ptr<generate::Vae> vae;
    std::unique_ptr<generate::Vocoder> vocoder;
    std::shared_ptr<model::Model> judge;
    std::string model_path;

    PyGenerator(const py::object& model_arg, const py::object& vae_arg, const std::string& vocoder_kind,
                const py::object& vocoder_arg, const py::object& judge_arg, std::optional<int> threads) {
        const auto model_path_in = optional_path(model_arg, "model");
        const auto vae_path = optional_path(vae_arg, "vae");
        const auto vocoder_path = optional_path(vocoder_arg, "vocoder_model");
        const auto judge_path = optional_path(judge_arg, "judge");
        set_threads_if_given(threads);
        auto shipped = [](const std::string& name, const std::string& arg) {
            std::string p = paths::shipped_model(name);
            if (p.empty()) throw Error("no " + name + ".safetensors in models/: give " + arg + "=PATH");
            return p;
        };
        if (vocoder_kind != "neural" && vocoder_kind != "griffin-lim")
            throw py::value_error("vocoder must be \"neural\" or \"griffin-lim\", got \"" + vocoder_kind + "\"");
        model_path = model_path_in ? *model_path_in : shipped("componet_default", "model");
        const std::string vp = vae_path ? *vae_path : shipped("vae_default", "vae");
        const std::string vocp = vocoder_kind == "neural" ? (vocoder_path ? *vocoder_path : shipped("vocoder_default", "vocoder_model")) : "";
        const std::string jp = judge_path ? *judge_path : paths::default_cocola_model();
        py::gil_scoped_release release;
        net = std::make_unique<componet::Componet>(componet::Componet::load(model_path));
        if (net->config().is_msdm())
            throw Error(model_path + ": an MSDM model; the Python module generates with CompoNet (use `cocola generate "
                        "--model msdm` for the baseline)");
        vae = std::make_unique<generate::Vae>(generate::Vae::load(vp));
        if (!vocp.empty()) vocoder = std::make_unique<generate::Vocoder>(generate::Vocoder::load(vocp));
        if (!jp.empty()) judge = std::make_shared<model::Model>(model::Model::load(jp));
    }

    py::object generate(const py::object& audio, int sr, const std::string& prompt, int steps, uint64_t seed,
                        double guidance, double eta, int candidates, const std::string& select, double overlap,
                        const std::string& level, bool return_info, const std::function<void(size_t, size_t)>& progress,
                        std::optional<int> threads) {
        set_threads_if_given(threads);
        if (steps < 1 || steps > 1000) throw py::value_error("steps must be in 1..1000");
        if (candidates < 1 || candidates > 64) throw py::value_error("candidates must be in 1..64");
        if (select != "cocola" && select != "norm") throw py::value_error("select must be \"cocola\" or \"norm\"");
        if (!(overlap >= 0 && overlap <= 2.56)) throw py::value_error("overlap must be in 0..2.56 seconds");
        if (!(eta >= 0 && eta <= 1)) throw py::value_error("eta must be in 0..1");
        if (!(guidance >= 0 && guidance <= 100)) throw py::value_error("guidance must be in 0..100");
        if (level != "auto" && level != "input" && level != "keep") throw py::value_error("level must be \"auto\", \"input\" or \"keep\"");
        if (select == "cocola" && candidates > 1 && !judge)
            throw Error("select=\"cocola\" needs a COCOLA model (judge=) and none ships here; use select=\"norm\"");
        const auto p = componet::parse_prompt(prompt, net->config().vocabulary);
        auto x = mono_16k(audio, sr, "audio");
        componet::GenerateOptions o;
        o.sampling.steps = steps;
        o.sampling.seed = seed;
        o.sampling.guidance = guidance;
        o.sampling.eta = eta;
        o.candidates = candidates;
        o.select = select;
        o.overlap_seconds = overlap;
        o.level = componet::resolve_level(level, p);
        Interruptible tick{progress};
        componet::Generated g;
        {
            py::gil_scoped_release release;
            g = componet::generate_audio(*net, *vae, vocoder.get(), judge.get(), x, p, o, tick);
        }
        py::array_t<float> out(static_cast<py::ssize_t>(g.audio.size()));
        std::memcpy(out.mutable_data(), g.audio.data(), sizeof(float) * g.audio.size());
        if (!return_info) return out;
        py::dict info;
        info["prompt"] = componet::format_prompt(p);
        info["seed"] = seed;
        info["steps"] = steps;
        info["sample_rate"] = audio::kSampleRate;
        info["chunk_scores"] = g.chunk_scores;
        info["level"] = o.level;
        info["level_gain_db"] = g.level_gain_db;
        if (!g.chunk_scores.empty()) {
            double s = 0;
            for (double v : g.chunk_scores) s += v / static_cast<double>(g.chunk_scores.size());
            info["cocola_score"] = s;
        }
        return py::make_tuple(out, info);
    }
};

}  // namespace

PYBIND11_MODULE(_cocola, m) {
    m.doc() = "cocola: musical coherence (COCOLA) from Python: embeddings, COCOLA scores, features, evaluation and "
              "CompoNet generation, computed by the same C++ library as the cocola command.";
    static py::exception<Error> error(m, "Error", PyExc_RuntimeError);
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const Error& e) {
            error(e.what());
        }
    });
    // The CLI uses every core unless told otherwise; so does the module.
    runtime::set_threads(0);
    audio::set_warning_handler([](const std::string& message) {
        if (collected_warnings) collected_warnings->push_back(message);
        else std::fprintf(stderr, "cocola: warning: %s\n", message.c_str());
    });

    m.attr("SAMPLE_RATE") = audio::kSampleRate;
    m.def("set_threads", &runtime::set_threads, py::arg("n"),
          "CPU threads for features and models (0: all cores), as the CLI's --threads.");
    m.def("get_threads", &runtime::threads, "CPU threads in use.");
    m.def("default_model_path", &paths::default_cocola_model,
          "The default COCOLA model's path ($COCOLA_MODEL, else the shipped one); empty when there is none.");

    m.def("load_audio", &load_audio, py::arg("path"),
          "Decode an audio file (WAV, FLAC, OGG, MP3, any rate and channels) to mono float32 at 16 kHz, as the CLI "
          "does. Returns (samples, 16000).");
    m.def("features", &features_of, py::arg("audio"), py::arg("sr") = audio::kSampleRate, py::arg("frontend") = "hpss",
          py::kw_only(), py::arg("threads") = py::none(),
          "Log-mel features [C, 64, 1 + samples/160] of audio (array [samples] or [channels, samples] at sr Hz, or a "
          "file path): frontend \"mel\" (1 channel) or \"hpss\" (2 channels, the released checkpoint's input).");

    py::class_<PyModel, std::shared_ptr<PyModel>>(m, "Model", "A COCOLA model (.safetensors); None: the default model.")
        .def(py::init<const py::object&, std::optional<int>>(), py::arg("path") = py::none(),
             py::kw_only(), py::arg("threads") = py::none())
        .def_readonly("path", &PyModel::path)
        .def_property_readonly("frontend", [](const PyModel& p) { return features::frontend_name(p.model->config().frontend); })
        .def_property_readonly("similarity", [](const PyModel& p) { return model::similarity_name(p.model->config().similarity); })
        .def_property_readonly("embedding_dim", [](const PyModel& p) { return p.model->config().embedding_dim; })
        .def("embed", &PyModel::embed, py::arg("audio"), py::arg("sr") = audio::kSampleRate, py::kw_only(),
             py::arg("mode") = "both", py::arg("hop") = 5.0, py::arg("whole") = false, py::arg("threads") = py::none(),
             "Embeddings [windows, D] of aligned 5 s windows (hop seconds apart; one row with whole=True), as "
             "`cocola embed`. audio: array [samples] or [channels, samples] at sr Hz, or a file path.")
        .def("score", &PyModel::score, py::arg("cond"), py::arg("acc"), py::arg("sr") = audio::kSampleRate,
             py::kw_only(), py::arg("mode") = "both", py::arg("per_window") = false, py::arg("hop") = 5.0,
             py::arg("whole") = false, py::arg("threads") = py::none(),
             "The COCOLA score sim(f(cond), f(acc)) averaged over aligned 5 s windows, as `cocola score`; with "
             "per_window=True, (score, per-window scores). Higher means more coherent.")
        .def("score_matrix", &PyModel::score_matrix, py::arg("conds"), py::arg("accs"),
             py::arg("sr") = audio::kSampleRate, py::kw_only(), py::arg("mode") = "both", py::arg("hop") = 5.0,
             py::arg("whole") = false, py::arg("threads") = py::none(),
             "Scores [len(conds), len(accs)] of every conditioning against every candidate, as `cocola score "
             "--matrix`.")
        .def("__repr__", [](const PyModel& p) {
            return "cocola.Model('" + p.path + "', frontend=" + features::frontend_name(p.model->config().frontend) +
                   ", similarity=" + model::similarity_name(p.model->config().similarity) + ")";
        });

    m.def("eval_accuracy", &eval_accuracy, py::arg("model"), py::arg("data"), py::kw_only(),
          py::arg("k") = 2, py::arg("split") = "test", py::arg("mode") = "both", py::arg("seed") = 0,
          py::arg("cache_dir") = py::none(), py::arg("progress") = py::none(), py::arg("threads") = py::none(),
          "Coherent sub-mix classification accuracy (the paper's Eq. 8) of a model on test sets (dataset roots or "
          "stem caches), as `cocola eval --json`: a dict with task, k, split, mode, models, datasets, results. "
          "progress: a function (done, total) called as batches finish.");

    py::class_<PyGenerator>(m, "Generator",
                            "CompoNet with its VAE, vocoder and judge, loaded once (None: the shipped models).")
        .def(py::init<const py::object&, const py::object&, const std::string&, const py::object&, const py::object&,
                      std::optional<int>>(),
             py::arg("model") = py::none(), py::kw_only(), py::arg("vae") = py::none(), py::arg("vocoder") = "neural",
             py::arg("vocoder_model") = py::none(), py::arg("judge") = py::none(), py::arg("threads") = py::none())
        .def_readonly("model_path", &PyGenerator::model_path)
        .def("generate", &PyGenerator::generate, py::arg("audio"), py::arg("sr") = audio::kSampleRate, py::kw_only(),
             py::arg("prompt"), py::arg("steps") = 50, py::arg("seed") = 0, py::arg("guidance") = 2.0,
             py::arg("eta") = 0.0, py::arg("candidates") = 1, py::arg("select") = "cocola", py::arg("overlap") = 0.64,
             py::arg("level") = "auto", py::arg("return_info") = false, py::arg("progress") = py::none(), py::arg("threads") = py::none(),
             "The stems a prompt asks for (\"in: piano; out: bass, drums\"), 16 kHz mono float32 of the input's "
             "length, as `cocola generate`; with return_info=True, (audio, info) with the COCOLA scores. level: \"auto\" "
             "(an accompaniment as loud as its input, an extraction as generated), \"input\" or \"keep\".");
}
