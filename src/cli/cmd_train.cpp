#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "cli/commands.hpp"
#include "cli/local_launcher.hpp"
#include "cli/progress.hpp"
#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/runtime.hpp"
#include "cocola/train.hpp"

namespace cocola::cli {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }


}  // namespace

Runner add_train_command(CLI::App& app) {
    struct Opts {
        train::TrainOptions t;
        std::vector<std::string> data;
        std::string loss = "paper";
        std::string frontend = "hpss", similarity = "bilinear", resume, cache_dir = data::default_cache_dir();
        bool single = false, shared = false, no_masks = false;
        train::DistributedOptions dist;
        int processes = 1;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("--data", o->data, "Dataset roots (any layout) or caches; several are mixed (the paper's \"All\")")
        ->delimiter(',');
    app.add_option("--data-weights", o->t.data_weights,
                   "Share of training batches from each --data source, in their order (e.g. 3,1; 0 = validate only). "
                   "Default: in proportion to their sizes")
        ->delimiter(',');
    app.add_option("-o,--out", o->t.run_dir, "Run folder: checkpoints, log.csv, curves.svg");
    app.add_option("--resume", o->resume, "Continue the run in this folder where it stopped (its options are reused; "
                                          "--steps, --lr, --similarity-lr and --feature-path may be given anew)");
    app.add_option("--frontend", o->frontend, "mel or hpss")->check(CLI::IsMember({"mel", "hpss"}))->capture_default_str();
    app.add_option("--similarity", o->similarity, "bilinear (the paper) or cosine (its ablation)")
        ->check(CLI::IsMember({"bilinear", "cosine"}))->capture_default_str();
    app.add_option("--loss", o->loss,
                   "paper: cross-entropy over the K x K anchor/positive matrix; symmetric: each of the 2K "
                   "embeddings against the 2K-1 others (as the reference code trains)")
        ->check(CLI::IsMember({"paper", "symmetric"}))->capture_default_str();
    auto* single_flag = app.add_flag("--single-stem", o->single, "Single-stem pairs instead of random sub-mixes");
    app.add_flag("--shared-stem", o->shared,
                 "Warm-up task for a curriculum: anchor and positive sub-mixes share one stem; continue with a "
                 "normal run from it with --init (validation still measures disjoint sub-mixes)")
        ->excludes(single_flag);
    app.add_flag("--no-channel-masks", o->no_masks,
                 "hpss: no random channel masks (the reference's rand_mask=False); by default each pair sees both "
                 "channels, harmonic only or percussive only");
    app.add_flag("--swap-roles", o->t.swap_roles,
                 "Swap anchor and positive of each training pair with probability 1/2: the reference's draw makes "
                 "anchors fuller than positives, which the symmetric loss (anchors among the candidates) can read");
    app.add_option("--windows-per-track", o->t.windows_per_track,
                   "N > 1: batches of K/N songs with N non-overlapping windows each (K a multiple of N): each anchor "
                   "then also faces its own song at other moments (same key, tempo and instruments), so it must match "
                   "the moment, not only the song. 1: K distinct songs, the paper")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    app.add_option("--stem-effects", o->t.stem_effects,
                   "Augmentation: the probability that each stem of a training window goes through a random chain of "
                   "production effects (equalizer, filters, compression, overdrive, chorus, reverb: those of `cocola "
                   "synth --effects random`), drawn anew for every window, before the sub-mixes are summed. 0: off "
                   "(the paper)")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    app.add_option("--stem-gain-db", o->t.stem_gain_db,
                   "Augmentation: each stem of a training window is scaled by a gain drawn uniformly in +-G dB, anew "
                   "for every window, before the sub-mixes are summed (other mixing levels than the songs' own). "
                   "0: off (the paper)")
        ->check(CLI::Range(0.0, 40.0))
        ->capture_default_str();
    app.add_option("--batch", o->t.batch, "K windows per batch (K x K similarity matrix)")->capture_default_str();
    app.add_option("--lr", o->t.lr, "Adam learning rate")->capture_default_str();
    app.add_option("--similarity-lr", o->t.similarity_lr,
                   "Adam rate of the bilinear matrix W (0: same as --lr, the paper). A smaller one, e.g. 1e-5, keeps "
                   "the logits from jumping by ~100 per step early on")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    app.add_option("--similarity-init-std", o->t.similarity_init_std,
                   "Std of the initial bilinear W (0.05 as the reference: logits of +-20 at the start)")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    app.add_option("--similarity-init-identity", o->t.similarity_init_identity,
                   "Add this times the identity to the initial W (a scaled dot product to start from)")
        ->capture_default_str();
    app.add_flag("--center-projection", o->t.center_projection,
                 "Data-dependent init of the projection: its outputs start at zero mean and unit spread over the "
                 "first two training batches");
    app.add_flag("--zero-init-residual", o->t.zero_init_residual,
                 "Fresh runs: every residual block's last BatchNorm starts at scale 0, so the EfficientNet starts "
                 "as its shallow skeleton (without it, training from scratch stays at chance for thousands of steps)");
    app.add_option("--aux-tempo", o->t.aux_tempo,
                   "Weight of an auxiliary training-only loss: a head on the pooled encoder features predicts each "
                   "window's tempo profile (onset autocorrelation, 0.15-2 s); 0 = off, the paper's recipe")
        ->check(CLI::Range(0.0, 100.0));
    app.add_option("--aux-labels", o->t.aux_labels,
                   "Weight of an auxiliary training-only loss: heads on the pooled encoder features classify each "
                   "window's tempo and key signature, from the meta.json of `cocola synth` songs (others are left "
                   "out); 0 = off, the paper's recipe")
        ->check(CLI::Range(0.0, 100.0));
    app.add_option("--warmup", o->t.warmup_steps,
                   "Raise the learning rates linearly from 0 over this many first steps (0: none, as the paper)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--lr-decay", o->t.lr_decay,
                   "After the warm-up: none (constant rates, the paper) or cosine (a half cosine down to zero at "
                   "--steps, so the run ends settled)")
        ->check(CLI::IsMember({"none", "cosine"}))
        ->capture_default_str();
    app.add_option("--steps", o->t.steps, "Total optimizer steps")->capture_default_str();
    app.add_option("--noise", o->t.noise_sigma,
                   "Std of Gaussian noise added to positives (the paper). Models learn to read its floor, which "
                   "clean audio lacks: 0 removes that shortcut (docs/training.md section 9)")
        ->capture_default_str();
    app.add_option("--max-overlap", o->t.max_overlap, "Max overlap ratio r of windows of one track")->capture_default_str();
    app.add_option("--dropout", o->t.dropout, "Dropout before the projection")->capture_default_str();
    app.add_option("--seed", o->t.seed, "Seed of data order, noise, masks, dropout and init")->capture_default_str();
    app.add_option("--val-every", o->t.val_every, "Steps between validations")->capture_default_str();
    app.add_option("--val-batches", o->t.val_batches, "Validation batches (fixed protocol)")->capture_default_str();
    app.add_option("--checkpoint-every", o->t.checkpoint_every, "Steps between checkpoints")->capture_default_str();
    app.add_option("--device", o->t.device, "cpu, or cuda with a CUDA build of LibTorch")
        ->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
    app.add_option("--feature-path", o->t.feature_path,
                   "Where training features are computed: threads (CPU threads beside the model), tensor (on the "
                   "training device), auto (tensor with --device cuda, threads on the CPU); the same features")
        ->check(CLI::IsMember({"auto", "threads", "tensor"}))->capture_default_str();
    app.add_option("--init", o->t.init_from, "Start from these weights (.safetensors) instead of a random init");
    app.add_option("--cache-dir", o->cache_dir, "Where dataset roots are indexed")->capture_default_str();
    auto* processes = app.add_option("--processes", o->processes,
                                     "Data-parallel training on this machine: N processes, each embedding 1/N of every "
                                     "batch (--batch a multiple of N), the same run as one process")
                          ->check(CLI::Range(1, 256))
                          ->group("Distributed");
    auto* world = app.add_option("--world-size", o->dist.world_size,
                                 "Data-parallel training over processes and machines: the number of ranks (start one "
                                 "`cocola train` per rank with the same flags, --rank and --master)")
                      ->check(CLI::Range(1, 4096))
                      ->group("Distributed")
                      ->excludes(processes);
    app.add_option("--rank", o->dist.rank, "This process's rank, 0..world-size-1 (rank 0 writes the run folder)")
        ->check(CLI::NonNegativeNumber)
        ->group("Distributed")
        ->needs(world);
    app.add_option("--master", o->dist.master,
                   "HOST:PORT where the ranks meet: rank 0's address, reachable by all (GLOO_SOCKET_IFNAME picks the "
                   "network interface)")
        ->capture_default_str()
        ->group("Distributed")
        ->needs(world);
    app.add_option("--dist-timeout", o->dist.timeout_seconds,
                   "Seconds a rank waits for the others (joining, and while rank 0 validates alone)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str()
        ->group("Distributed");
    app.footer("Defaults are the paper's recipe (batch 32 of 5 s windows, sub-mix pairs, r = 0.5, noise 1e-3,\n"
               "dropout 0.1, Adam 1e-3, bilinear similarity). Ctrl-C stops after the current step with a checkpoint;\n"
               "a killed run continues from its last checkpoint with --resume RUN_DIR, identically.");
    return [o, &app]() {
        if (o->processes > 1) return run_local_processes(o->processes, own_command_line(), "--processes");
        if (o->dist.world_size > 1 && !train::distributed_available())
            throw Error("--world-size: this build has no Gloo process group (on Debian: apt install libgloo-dev, then "
                        "rebuild)");
        if (o->dist.rank >= o->dist.world_size)
            throw Error("--rank " + std::to_string(o->dist.rank) + " must be below --world-size " +
                        std::to_string(o->dist.world_size));
        // Ranks other than 0 write nothing and take the run's options from rank 0 (src/train/distributed.hpp):
        // they need the data (their own copy, or rank 0's paths on a shared file system), no run folder.
        const bool follower = o->dist.rank > 0;
        if (std::string(runtime::allocator()) != "tcmalloc")
            std::cerr << "note: this cocola runs on the system allocator: training steps on the CPU are up to 1.8x "
                         "slower than with tcmalloc (Debian: apt install libgoogle-perftools-dev, then rebuild)\n";
        train::TrainOptions t = o->t;
        const bool resume = !o->resume.empty();
        if (follower) {
            for (const auto& d : o->data)
                t.caches.push_back(std::filesystem::absolute(data::ensure_cache(d, o->cache_dir)).string());
        } else if (resume) {
            t = train::read_run_options(o->resume);
            t.run_dir = o->resume;
            // The length, the learning rates for the rest of the run and where features are computed may
            // change; everything else is fixed (train::fixed_on_resume_flags).
            train::apply_resumable_options(o->t, t, [&](const std::string& flag) { return app.count(flag) > 0; });
            for (const auto& fixed : train::fixed_on_resume_flags())
                if (app.count(fixed))
                    std::cerr << "note: " << fixed << " is ignored with --resume (the run keeps its options.json)\n";
        } else {
            if (o->data.empty()) throw Error("--data is required (dataset roots or caches)");
            if (t.run_dir.empty()) throw Error("-o/--out RUN_DIR is required");
            t.frontend = features::parse_frontend(o->frontend);
            t.similarity = model::parse_similarity(o->similarity);
            t.loss = o->loss == "symmetric" ? train::LossKind::Symmetric : train::LossKind::Paper;
            t.pair_mode = o->single ? data::PairMode::SingleStem
                          : o->shared ? data::PairMode::SharedStem
                                      : data::PairMode::SubMix;
            t.channel_masks = !o->no_masks;
            for (const auto& d : o->data) {
                Progress bar("index " + d, 1);
                t.caches.push_back(std::filesystem::absolute(data::ensure_cache(
                    d, o->cache_dir, [&](size_t done, size_t total, const std::string&) {
                        bar.set_total(total);
                        bar.update(done);
                    })).string());
                bar.finish();
            }
        }
        std::signal(SIGINT, on_signal);
        std::signal(SIGTERM, on_signal);
        if (follower) {
            train::train(t, resume, {}, [] { return g_stop != 0; }, o->dist);
            return g_stop ? 130 : 0;
        }
        Progress bar("train", static_cast<size_t>(t.steps));
        double loss_avg = -1, acc_avg = -1;
        std::string last_val;
        bool first = true;
        train::train(
            t, resume,
            [&](const train::StepLog& s, int64_t) {
                if (first) {
                    bar.resume_from(static_cast<size_t>(s.step));  // the rate counts from here
                    first = false;
                }
                loss_avg = loss_avg < 0 ? s.loss : 0.95 * loss_avg + 0.05 * s.loss;
                acc_avg = acc_avg < 0 ? s.accuracy : 0.95 * acc_avg + 0.05 * s.accuracy;
                char buf[160];
                if (s.val_loss >= 0) {
                    std::snprintf(buf, sizeof(buf), " val loss %.3f acc %.1f%%", s.val_loss, 100 * s.val_accuracy);
                    last_val = buf;
                    if (s.val_k2_accuracy >= 0) {
                        std::snprintf(buf, sizeof(buf), " K=2 %.1f%%", 100 * s.val_k2_accuracy);
                        last_val += buf;
                    }
                    bar.message("step " + std::to_string(s.step) + ":" + last_val);
                }
                std::snprintf(buf, sizeof(buf), "loss %.3f acc %.1f%% (%.2f s/step, features %.2f s)%s", loss_avg,
                              100 * acc_avg, s.seconds, s.feature_seconds, last_val.c_str());
                bar.set_suffix(buf);
                bar.update(static_cast<size_t>(s.step));
            },
            [] { return g_stop != 0; }, o->dist);
        bar.finish();
        std::cout << "run: " << t.run_dir << " (last.safetensors, best.safetensors, log.csv, curves.svg)\n";
        return g_stop ? 130 : 0;
    };
}

}  // namespace cocola::cli
