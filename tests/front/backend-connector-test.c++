#include "front/backend-connector.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <gtest/gtest.h>

#include "common/listen-socket.h"

namespace tlstap {
namespace {

int waitWritable(int fd) {
  struct pollfd entry = {fd, POLLOUT, 0};
  return poll(&entry, 1, 5000);
}

TEST(BackendConnector, ResolvesNumericHostsOfBothFamilies) {
  SocketAddress address;
  EXPECT_EQ(resolveBackendHost("127.0.0.1", address), nullptr);
  EXPECT_EQ(withPort(address, 8080).toString(), "127.0.0.1:8080");
  EXPECT_EQ(resolveBackendHost("::1", address), nullptr);
  EXPECT_EQ(withPort(address, 8080).toString(), "[::1]:8080");
  EXPECT_NE(resolveBackendHost("", address), nullptr);
}

TEST(BackendConnector, ConnectsWithoutBlocking) {
  SocketAddress any;
  ASSERT_EQ(parseIpPort("127.0.0.1:1", any), nullptr);
  kj::AutoCloseFd listener;
  // Port 0: the kernel picks a free one.
  auto address = withPort(any, 0);
  ASSERT_EQ(openListenSocket(address, listener), nullptr);
  auto target = withPort(any, boundPort(listener.get()));

  kj::AutoCloseFd fd;
  ASSERT_EQ(startConnect(target, fd), 0);
  ASSERT_EQ(waitWritable(fd.get()), 1);
  EXPECT_EQ(connectResult(fd.get()), 0);
}

TEST(BackendConnector, ReportsARefusedConnection) {
  SocketAddress any;
  ASSERT_EQ(parseIpPort("127.0.0.1:1", any), nullptr);
  kj::AutoCloseFd listener;
  ASSERT_EQ(openListenSocket(withPort(any, 0), listener), nullptr);
  auto target = withPort(any, boundPort(listener.get()));
  listener = nullptr;  // nobody listens there any more

  kj::AutoCloseFd fd;
  int started = startConnect(target, fd);
  if (started == 0) {
    ASSERT_EQ(waitWritable(fd.get()), 1);
    EXPECT_EQ(connectResult(fd.get()), ECONNREFUSED);
  } else {
    EXPECT_EQ(started, ECONNREFUSED);
  }
}

}  // namespace
}  // namespace tlstap
