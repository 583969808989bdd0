// Data-parallel training over processes and machines (internal to src/train), on PyTorch's own distributed
// engine: c10d's Gloo process group, which rendezvous through a TCPStore at the master's HOST:PORT.
//
// How a step stays equal to one process training on the whole batch:
//   - every rank draws the same global batch (the data schedule is a function of the step) and computes the
//     features of its slice of the pairs only;
//   - BatchNorm normalises with the statistics of the global batch (sync_batch_norm), and dropout and
//     drop-connect draw their masks for the global batch and keep the rows of the slice;
//   - the embeddings are gathered, and every rank computes the whole K x K loss; the gradient enters each
//     rank's graph only through its own rows, so the encoder's gradients summed over the ranks are the
//     one-process gradient; the parameters every rank sees whole (the bilinear W, training-only heads) get the
//     same gradient everywhere and are averaged only to keep them bit-identical.
// Collectives run on CPU copies: Gloo is built for CPU tensors everywhere, whatever the training device.
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "cocola/train.hpp"
#include "cocola/train_core.hpp"

namespace cocola::train::dist {

// Whether this build has the Gloo process group (LibTorch built with it, and the gloo headers at hand).
bool available();

// One process group. Every call is a collective: all ranks make the same calls in the same order, or the
// group waits (up to the timeout). A rank that dies or stops makes the others' next call throw cocola::Error.
class Group {
   public:
    // Connects rank `o.rank` of `o.world_size` through the store at `o.master` (rank 0 serves it). Throws
    // cocola::Error on a malformed address, a port in use, or ranks that do not all arrive within the timeout.
    explicit Group(const DistributedOptions& o);
    ~Group();
    Group(const Group&) = delete;
    Group& operator=(const Group&) = delete;

    int rank() const;
    int size() const;

    void all_reduce_sum(at::Tensor& t);              // a CPU tensor, in place
    at::Tensor all_gather(const at::Tensor& local);  // [size * n, ...] from every rank's [n, ...] (same shapes)
    void broadcast(at::Tensor& t, int root = 0);     // a contiguous CPU tensor, in place
    std::string broadcast_string(const std::string& s, int root = 0);
    bool any(bool flag);                             // true on every rank if it is true on one

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Training-mode BatchNorm over the global batch: statistics summed over the ranks in the forward pass, and the
// two gradient sums of the backward pass likewise; updates the running statistics and the batch count as
// torch::nn::BatchNorm2d does. The weight and bias gradients are this rank's share (the gradient all-reduce
// sums them).
at::Tensor sync_batch_norm(Group& group, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                           at::Tensor& running_mean, at::Tensor& running_var, at::Tensor& batches_tracked,
                           double momentum, double eps);

// Rows [size * n, ...] of every rank's `local` [n, ...]: this rank's block is `local` itself (so gradients flow
// back into it), the others' are constants.
at::Tensor gather_rows_with_grad(Group& group, const at::Tensor& local);

// Sums the gradients of `params` over the ranks (flattened into one buffer); those named in `averaged` by prefix
// are then divided by the world size.
void all_reduce_gradients(Group& group, const NamedTensors& params, const std::vector<std::string>& averaged);

// Makes every rank's training state rank 0's: the objective's checkpoint state and its optimizer's (the model,
// the optimizer moments and step count, extra heads), sent from rank 0 and restored on the others through the
// same restore() as a checkpoint. Called after rank 0 initialised or resumed.
void share_state(Group& group, Objective& objective);

}  // namespace cocola::train::dist
