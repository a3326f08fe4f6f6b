#include "front/ca-http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <kj/debug.h>

#include "common/listen-socket.h"

namespace tlstap {
namespace {

// A CaHttpServer on 127.0.0.1 (a free port) on its own event loop, which the test runs while a
// client thread talks to it.
class CaHttpTest : public testing::Test {
public:
  CaHttpTest() : base(event_base_new()) {
    SocketAddress address;
    auto v4 = reinterpret_cast<sockaddr_in*>(&address.storage);
    v4->sin_family = AF_INET;
    v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.length = sizeof(*v4);  // port 0: any free one
    kj::AutoCloseFd fd;
    KJ_ASSERT(openListenSocket(address, fd) == nullptr);
    port = boundPort(fd.get());
    kj::Vector<kj::AutoCloseFd> fds;
    fds.add(kj::mv(fd));
    for (int i = 0; i < 300; i++) der.add(kj::byte(i * 7));
    server = kj::heap<CaHttpServer>(base, kj::mv(fds), der.asPtr(), 1);
    server->start();
  }
  ~CaHttpTest() noexcept {
    server = nullptr;
    event_base_free(base);
  }

  // Sends `request` (then half-closes if `close`), returns all the server sent until it closed.
  std::string exchange(std::string request, bool close = true) {
    std::string response;
    std::atomic<bool> done(false);
    std::thread client([&]() {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in address = {};
      address.sin_family = AF_INET;
      address.sin_port = htons(port);
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      KJ_ASSERT(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
      size_t sent = 0;
      while (sent < request.size()) {
        ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;  // the server may close on a request it refuses
        sent += size_t(n);
      }
      if (close) shutdown(fd, SHUT_WR);
      char buffer[4096];
      for (;;) {
        ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
        if (n <= 0) break;
        response.append(buffer, size_t(n));
      }
      ::close(fd);
      done = true;
    });
    auto deadline = time(nullptr) + 20;
    while (!done && time(nullptr) < deadline) {
      event_base_loop(base, EVLOOP_NONBLOCK);
      usleep(1000);
    }
    client.join();
    // Let the server see the client's close and free it.
    for (int i = 0; i < 50 && server->clientCount() > 0; i++) {
      event_base_loop(base, EVLOOP_NONBLOCK);
      usleep(1000);
    }
    return response;
  }

  std::string body() const { return std::string(der.begin(), der.end()); }

  event_base* base;
  uint16_t port = 0;
  kj::Vector<kj::byte> der;
  kj::Own<CaHttpServer> server;
};

TEST_F(CaHttpTest, AnyGetGetsTheCertificate) {
  for (auto path : {"/", "/ca.crt", "/some/where?x=1"}) {
    auto response = exchange(std::string("GET ") + path +
                             " HTTP/1.1\r\nHost: tlstap\r\nUser-Agent: test\r\n\r\n");
    auto headEnd = response.find("\r\n\r\n");
    ASSERT_NE(headEnd, std::string::npos) << response;
    auto head = response.substr(0, headEnd);
    EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head;
    EXPECT_NE(head.find("Content-Type: application/x-x509-ca-cert\r\n"), std::string::npos);
    EXPECT_NE(head.find("Content-Length: 300"), std::string::npos);
    EXPECT_EQ(response.substr(headEnd + 4), body());
  }
  EXPECT_EQ(server->clientCount(), 0u);
}

TEST_F(CaHttpTest, RequestInSmallPiecesAndWithoutHalfClose) {
  // An HTTP/1.0 client that keeps its side open: the server answers and closes.
  auto response = exchange("GET / HTTP/1.0\n\n", false);
  EXPECT_EQ(response.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  EXPECT_EQ(response.substr(response.size() - 300), body());
}

TEST_F(CaHttpTest, HeadGetsHeadersOnly) {
  auto response = exchange("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(response.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  EXPECT_EQ(response.find("\r\n\r\n") + 4, response.size());
}

TEST_F(CaHttpTest, OtherMethodsAndGarbageAreRefused) {
  auto post = exchange("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(post.rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0), 0u) << post;
  auto garbage = exchange(std::string("\x16\x03\x01\x02\x00\x01\r\n\r\n", 10));
  EXPECT_EQ(garbage.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << garbage;
  EXPECT_EQ(server->clientCount(), 0u);
}

TEST_F(CaHttpTest, OversizedRequestIsRefused) {
  auto response = exchange("GET / HTTP/1.1\r\nX: " + std::string(20000, 'x'));
  EXPECT_EQ(response.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << response.substr(0, 100);
  EXPECT_EQ(server->clientCount(), 0u);
}

TEST_F(CaHttpTest, SilentClientIsClosedAfterTheTimeout) {
  // Sends nothing and keeps its side open: the 1 s timeout closes it with no answer.
  auto start = time(nullptr);
  auto response = exchange("", false);
  EXPECT_EQ(response, "");
  EXPECT_LE(time(nullptr) - start, 5);
  EXPECT_EQ(server->clientCount(), 0u);
}

}  // namespace
}  // namespace tlstap
