// Helpers of replay-client that have nothing to do with RPC: a seeded generator for reproducible
// payloads, and SHA-256 so the manifest can name each direction's bytes without keeping them.
// The test tools link only kj and capnp, hence a small SHA-256 of our own (FIPS 180-4); the
// checker recomputes it with Python's hashlib, so a mistake here cannot go unnoticed.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <kj/common.h>
#include <kj/string.h>

namespace tlstap {

// xoshiro256** seeded through splitmix64: fast enough to generate hundreds of MiB, and the same
// (seed, stream, lane) always gives the same bytes.
class Rng {
public:
  Rng() : Rng(0, 0, 0) {}
  Rng(uint64_t seed, uint64_t stream, uint64_t lane) {
    uint64_t x = seed ^ (stream * 0x9e3779b97f4a7c15ull) ^ (lane * 0xd1b54a32d192ed03ull);
    for (auto& word : s) word = splitmix(x);
  }

  uint64_t next() {
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }

  // Uniform in [0, bound); bound 0 gives 0. The modulo bias is irrelevant for test data.
  uint64_t below(uint64_t bound) { return bound == 0 ? 0 : next() % bound; }

  // Log-uniform in [lo, hi]: as many values between 1 KiB and 2 KiB as between 32 and 64 KiB.
  uint64_t logUniform(uint64_t lo, uint64_t hi) {
    if (lo < 1) lo = 1;
    if (hi <= lo) return hi;
    double u = double(next() >> 11) / double(uint64_t(1) << 53);
    double value = exp(log(double(lo)) + u * (log(double(hi) + 1) - log(double(lo))));
    return kj::min(hi, kj::max(lo, uint64_t(value)));
  }

  // A chunk size in [1, 65536], log-uniform, so small reads are as common as in a real relay.
  uint64_t chunkSize() { return logUniform(1, 65536); }

  void fill(kj::ArrayPtr<kj::byte> out) {
    size_t i = 0;
    for (; i + 8 <= out.size(); i += 8) {
      uint64_t word = next();
      memcpy(out.begin() + i, &word, 8);
    }
    if (i < out.size()) {
      uint64_t word = next();
      memcpy(out.begin() + i, &word, out.size() - i);
    }
  }

private:
  uint64_t s[4];

  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

class Sha256 {
public:
  void update(kj::ArrayPtr<const kj::byte> data) {
    total += data.size();
    const kj::byte* p = data.begin();
    size_t left = data.size();
    if (used > 0) {
      size_t take = kj::min(left, sizeof(block) - used);
      memcpy(block + used, p, take);
      used += take;
      p += take;
      left -= take;
      if (used < sizeof(block)) return;
      compress(block);
      used = 0;
    }
    for (; left >= 64; p += 64, left -= 64) compress(p);
    memcpy(block, p, left);
    used = left;
  }

  // Lower-case hex of the digest; the object is spent afterwards.
  kj::String finishHex() {
    uint64_t bits = total * 8;
    kj::byte pad[72] = {0x80};
    size_t padLength = (used < 56 ? 56 - used : 120 - used);
    for (int i = 0; i < 8; i++) pad[padLength + i] = kj::byte(bits >> (56 - 8 * i));
    update(kj::arrayPtr(pad, padLength + 8));
    static const char HEX[] = "0123456789abcdef";
    auto out = kj::heapString(64);
    for (int i = 0; i < 8; i++) {
      for (int j = 0; j < 8; j++) out[i * 8 + j] = HEX[(h[i] >> (28 - 4 * j)) & 15];
    }
    return out;
  }

private:
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  kj::byte block[64];
  size_t used = 0;
  uint64_t total = 0;

  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  void compress(const kj::byte* p) {
    static const uint32_t K[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; i++) {
      w[i] = uint32_t(p[4 * i]) << 24 | uint32_t(p[4 * i + 1]) << 16 |
             uint32_t(p[4 * i + 2]) << 8 | uint32_t(p[4 * i + 3]);
    }
    for (int i = 16; i < 64; i++) {
      uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
      uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] +
                    w[i];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      hh = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
    h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
};

}  // namespace tlstap
