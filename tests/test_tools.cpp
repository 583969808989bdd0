// tools/convert_official_checkpoint.py on a fabricated Lightning checkpoint of the official structure.
#include <gtest/gtest.h>

#include <cstdlib>

#include "cocola/model.hpp"
#include "cocola/safetensors.hpp"
#include "test_util.hpp"

using namespace cocola;

TEST(ConvertOfficialCheckpoint, FabricatedCkptConvertsToIdenticalWeights) {
    if (std::system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0)
        GTEST_SKIP() << "skipped: /usr/bin/python3 with python3-torch and python3-numpy is not installed";
    const std::string dir = testutil::temp_dir("convert");
    const std::string golden = testutil::golden("models/cocola_hpss_seed0.safetensors");
    const std::string ckpt = dir + "/fake.ckpt", out = dir + "/converted.safetensors";
    const std::string src = COCOLA_SOURCE_DIR;
    ASSERT_EQ(std::system(("/usr/bin/python3 " + src + "/tests/make_fake_official_ckpt.py " + golden + " " + ckpt +
                           " " + dir + "/pkg >/dev/null")
                              .c_str()),
              0);
    // A fresh process in another folder: the fake reference package is not importable there.
    ASSERT_EQ(std::system(("cd / && /usr/bin/python3 " + src + "/tools/convert_official_checkpoint.py " + ckpt +
                           " -o " + out + " >/dev/null")
                              .c_str()),
              0);
    auto a = safetensors::load(golden), b = safetensors::load(out);
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (size_t i = 0; i < a.tensors.size(); ++i) {
        EXPECT_EQ(a.tensors[i].first, b.tensors[i].first);
        EXPECT_TRUE(at::equal(a.tensors[i].second, b.tensors[i].second)) << a.tensors[i].first;
    }
    EXPECT_EQ(b.metadata["input_type"], "double_channel_harmonic_percussive");
    EXPECT_EQ(b.metadata["embedding_dim"], "512");
    auto m = model::Model::load(out);
    EXPECT_EQ(m.config().in_channels(), 2);

    // A file that is not a checkpoint is refused with its name.
    const std::string junk = dir + "/junk.ckpt";
    std::system(("echo nonsense > " + junk).c_str());
    auto r = std::system(("cd / && /usr/bin/python3 " + src + "/tools/convert_official_checkpoint.py " + junk + " -o " +
                          dir + "/x.safetensors > " + dir + "/log 2>&1").c_str());
    EXPECT_NE(r, 0);
}
