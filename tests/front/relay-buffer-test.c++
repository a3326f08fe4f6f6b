#include "front/relay-buffer.h"

#include <string.h>

#include <gtest/gtest.h>
#include <kj/string.h>

namespace tlstap {
namespace {

// As the relay fills the buffer: a read into writable(), then commit().
void put(RelayBuffer& buffer, kj::StringPtr text) {
  auto room = buffer.writable();
  ASSERT_LE(text.size(), room.size());
  memcpy(room.begin(), text.begin(), text.size());
  buffer.commit(text.size());
}

kj::String textOf(kj::ArrayPtr<const kj::byte> bytes) {
  return kj::heapString(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

TEST(RelayBuffer, HoldsNoStorageWhileEmpty) {
  RelayBuffer buffer(16);
  EXPECT_FALSE(buffer.allocated());
  EXPECT_TRUE(buffer.empty());
  EXPECT_EQ(buffer.room(), 16u);
  put(buffer, "abc");
  EXPECT_TRUE(buffer.allocated());
  buffer.releaseIfEmpty();
  EXPECT_TRUE(buffer.allocated());  // not empty: kept
  buffer.consume(3);
  EXPECT_EQ(buffer.room(), 16u);
  // An idle connection must not keep its buffers.
  buffer.releaseIfEmpty();
  EXPECT_FALSE(buffer.allocated());
  EXPECT_EQ(buffer.room(), 16u);
}

TEST(RelayBuffer, KeepsOrderAcrossPartialWrites) {
  RelayBuffer buffer(8);
  put(buffer, "abcdef");
  buffer.consume(4);  // a partial write took "abcd"
  EXPECT_EQ(textOf(buffer.readable()), "ef");
  EXPECT_EQ(buffer.room(), 6u);
  // Needs the unwritten bytes slid to the front to fit.
  put(buffer, "ghijkl");
  EXPECT_EQ(textOf(buffer.readable()), "efghijkl");
  EXPECT_EQ(buffer.room(), 0u);
  buffer.consume(1);
  EXPECT_EQ(textOf(buffer.readable()), "fghijkl");
}

TEST(RelayBuffer, RefusesMoreThanItsBound) {
  RelayBuffer buffer(4);
  put(buffer, "abc");
  EXPECT_EQ(buffer.writable().size(), 1u);
  EXPECT_ANY_THROW(buffer.commit(2));
  EXPECT_EQ(textOf(buffer.readable()), "abc");
  EXPECT_ANY_THROW(buffer.consume(4));
}

TEST(RelayBuffer, ReadsStraightIntoItsRoom) {
  RelayBuffer buffer(8);
  auto room = buffer.writable();
  EXPECT_TRUE(buffer.allocated());
  ASSERT_EQ(room.size(), 8u);
  memcpy(room.begin(), "abcde", 5);
  buffer.commit(5);
  EXPECT_EQ(textOf(buffer.readable()), "abcde");
  buffer.consume(4);
  // The held byte slides to the front, so the room is whole again.
  room = buffer.writable();
  ASSERT_EQ(room.size(), 7u);
  memcpy(room.begin(), "fghijkl", 7);
  buffer.commit(7);
  EXPECT_EQ(textOf(buffer.readable()), "efghijkl");
  EXPECT_EQ(buffer.writable().size(), 0u);
  EXPECT_ANY_THROW(buffer.commit(1));
  buffer.consume(8);
  EXPECT_EQ(buffer.writable().size(), 8u);
}

}  // namespace
}  // namespace tlstap
