// fuzz/replay_main.cpp: a main() for any fuzz harness, for builds without libFuzzer.
//
// Runs LLVMFuzzerTestOneInput on every file named on the command line (directories are
// walked; a missing one is skipped), then on a fixed series of pseudo-random inputs and
// mutations of those files, so the harness is exercised under gcc and its sanitizers too.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

void run(const std::string& input) {
    // A heap copy of exactly the input's size, so ASan catches reads past its end.
    std::vector<std::uint8_t> copy(input.begin(), input.end());
    LLVMFuzzerTestOneInput(copy.data(), copy.size());
}

} // namespace

int main(int argc, char** argv) {
    namespace fs = std::filesystem;
    std::vector<std::string> inputs;
    for (int a = 1; a < argc; ++a) {
        const fs::path root(argv[a]);
        std::vector<fs::path> files;
        if (fs::is_directory(root)) {
            for (const auto& entry : fs::recursive_directory_iterator(root))
                if (entry.is_regular_file()) files.push_back(entry.path());
        } else if (fs::is_regular_file(root)) {
            files.push_back(root);
        }
        for (const fs::path& file : files) {
            std::ifstream in(file, std::ios::binary);
            inputs.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        }
    }
    for (const std::string& input : inputs) run(input);

    std::mt19937_64 rng(0x5eed);
    constexpr int kRandomInputs = 20000;
    for (int n = 0; n < kRandomInputs; ++n) {
        std::string input;
        if (!inputs.empty() && n % 2) {
            input = inputs[rng() % inputs.size()];
            for (int flips = 1 + static_cast<int>(rng() % 4); flips > 0 && !input.empty(); --flips)
                input[rng() % input.size()] = static_cast<char>(rng());
            if (rng() % 4 == 0) input.resize(rng() % (input.size() + 1));
        } else {
            input.resize(rng() % 64);
            for (char& c : input) c = static_cast<char>(rng());
        }
        run(input);
    }
    std::printf("replayed %zu files and %d generated inputs\n", inputs.size(), kRandomInputs);
    return 0;
}
