// tools/convert_official_checkpoint.py on a fabricated Lightning checkpoint of the official structure.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

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

// scripts/paired_rows.py: paired changes on a rows.csv whose answer is known by hand.
TEST(PairedRows, CountsLostAndGainedRowsAndTheMeanChange) {
    if (std::system("python3 -c 'import csv' >/dev/null 2>&1") != 0) GTEST_SKIP() << "skipped: no python3";
    const std::string dir = testutil::temp_dir("paired_rows");
    const std::string csv = dir + "/rows.csv", out = dir + "/out.txt";
    {
        std::ofstream f(csv);
        f << "model,dataset,batch,track,offset_s,anchor,positive,right,own_similarity,best_other_similarity,"
             "chosen_track\n";
        // Model b against a on set dry: b gains row 1 and loses row 3, (+1 - 1) / 4 = 0. On set fx: b gains rows
        // 0 and 1 of 4: +50 points. From dry to fx, a loses row 0 (-25 points), b gains row 3 (+25).
        const int a_dry[] = {1, 0, 1, 1}, b_dry[] = {1, 1, 1, 0}, a_fx[] = {0, 0, 1, 1}, b_fx[] = {1, 1, 1, 1};
        for (int i = 0; i < 4; ++i) {
            const std::string key = std::to_string(i) + ",song" + std::to_string(i) + ",1.5,bass,drums+piano,";
            f << "a,dry," << key << a_dry[i] << ",1,0,x\n" << "b,dry," << key << b_dry[i] << ",1,0,x\n";
            f << "a,fx," << key << a_fx[i] << ",1,0,x\n" << "b,fx," << key << b_fx[i] << ",1,0,x\n";
        }
    }
    const std::string script = std::string(COCOLA_SOURCE_DIR) + "/scripts/paired_rows.py ";
    ASSERT_EQ(std::system(("python3 " + script + csv + " --reference a > " + out + " 2>&1").c_str()), 0);
    std::ifstream in(out);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find("b vs a, dry: +0.00 ± 80.02 points (4 rows, 1 lost, 1 gained)"), std::string::npos) << text;
    EXPECT_NE(text.find("b vs a, fx: +50.00 ± 56.58 points (4 rows, 0 lost, 2 gained)"), std::string::npos) << text;
    ASSERT_EQ(std::system(("python3 " + script + csv + " --across dry:fx > " + out + " 2>&1").c_str()), 0);
    std::ifstream in2(out);
    const std::string across((std::istreambuf_iterator<char>(in2)), std::istreambuf_iterator<char>());
    EXPECT_NE(across.find("a, fx vs dry: -25.00 ± 49.00 points (4 rows, 1 lost, 0 gained)"), std::string::npos) << across;
    EXPECT_NE(across.find("b, fx vs dry: +25.00 ± 49.00 points (4 rows, 0 lost, 1 gained)"), std::string::npos) << across;
    EXPECT_NE(std::system(("python3 " + script + csv + " --reference c > " + out + " 2>&1").c_str()), 0)
        << "an unknown model is refused";
}
