#include "supervised-recorder-source.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <kj/debug.h>

#include "common/fd-stream.h"
#include "common/supervisor-protocol.h"

namespace tlstap {

namespace {

// Room for a few fds: the supervisor sends one, but any more that arrive are received (and
// closed) rather than left to the kernel's truncation.
constexpr size_t MAX_RECEIVED_FDS = 4;

}  // namespace

SupervisedRecorderSource::SupervisedRecorderSource(event_base* base, kj::AutoCloseFd control)
    : base(base), control(kj::mv(control)),
      readable(base, this->control.get(), EV_READ | EV_PERSIST,
               &SupervisedRecorderSource::onReadable, this) {}

SupervisedRecorderSource::~SupervisedRecorderSource() noexcept(false) {}

kj::StringPtr SupervisedRecorderSource::describe() const { return "embedded recorder"_kj; }

kj::Promise<kj::Own<kj::AsyncIoStream>> SupervisedRecorderSource::connect() {
  KJ_IF_MAYBE(exception, failure) return kj::cp(*exception);
  KJ_IF_MAYBE(fd, unclaimed) {
    auto link = kj::mv(*fd);
    unclaimed = nullptr;
    return wrapSocketFd(base, kj::mv(link));
  }
  auto paf = kj::newPromiseAndFulfiller<kj::AutoCloseFd>();
  waiting.add(kj::mv(paf.fulfiller));
  ask();
  KJ_IF_MAYBE(exception, failure) return kj::cp(*exception);
  return paf.promise.then([this](kj::AutoCloseFd fd) -> kj::Own<kj::AsyncIoStream> {
    return wrapSocketFd(base, kj::mv(fd));
  });
}

void SupervisedRecorderSource::ask() {
  if (asked || failure != nullptr) return;
  bool anyWaiting = false;
  for (auto& waiter : waiting) anyWaiting = anyWaiting || waiter->isWaiting();
  if (!anyWaiting) return;
  kj::byte request = supervisor::REQUEST_LINK;
  // One byte on an idle SOCK_SEQPACKET socket: it never blocks.
  if (::send(control, &request, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) {
    fail(KJ_EXCEPTION(DISCONNECTED, "the embedded recorder's supervisor has exited",
                      strerror(errno)));
    return;
  }
  asked = true;
  readable.add();
}

void SupervisedRecorderSource::onReadable(evutil_socket_t, short, void* arg) {
  auto& self = *reinterpret_cast<SupervisedRecorderSource*>(arg);
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { self.receive(); })) {
    self.fail(kj::mv(*exception));
  }
}

void SupervisedRecorderSource::receive() {
  kj::byte buffer[2];
  struct iovec piece = {buffer, sizeof(buffer)};
  alignas(struct cmsghdr) char space[CMSG_SPACE(sizeof(int) * MAX_RECEIVED_FDS)];
  struct msghdr message;
  memset(&message, 0, sizeof(message));
  message.msg_iov = &piece;
  message.msg_iovlen = 1;
  message.msg_control = space;
  message.msg_controllen = sizeof(space);
  // MSG_CMSG_CLOEXEC: nothing is ever executed after lock-down, but nothing received should be
  // able to leak into a child before it either.
  ssize_t n = ::recvmsg(control, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  int error = errno;

  // Every fd received is owned at once, so that the ones not used are closed.
  kj::Vector<kj::AutoCloseFd> fds;
  if (n > 0) {
    for (auto header = CMSG_FIRSTHDR(&message); header != nullptr;
         header = CMSG_NXTHDR(&message, header)) {
      if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
        fds.add(kj::AutoCloseFd(fd));
      }
    }
  }
  if (n <= 0) {
    fail(KJ_EXCEPTION(DISCONNECTED, "the embedded recorder's supervisor has exited",
                      n < 0 ? strerror(error) : "end of file"));
    return;
  }
  asked = false;
  readable.remove();
  if (n == 1 && buffer[0] == supervisor::REPLY_REFUSED && fds.size() == 0) {
    recorderRefused = true;
    fail(KJ_EXCEPTION(FAILED, "tlstap-recorder refused its options"));
    return;
  }
  struct stat info;
  if (n != 1 || buffer[0] != supervisor::REPLY_LINK || fds.size() != 1 ||
      (message.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 || fstat(fds[0], &info) != 0 ||
      !S_ISSOCK(info.st_mode)) {
    fail(KJ_EXCEPTION(FAILED, "the embedded recorder's supervisor sent a malformed answer"));
    return;
  }
  // The oldest connect() still waiting gets it; one that was dropped leaves it for the next.
  kj::Vector<kj::Own<kj::PromiseFulfiller<kj::AutoCloseFd>>> still;
  kj::Maybe<kj::AutoCloseFd> link = kj::mv(fds[0]);
  for (auto& waiter : waiting) {
    if (!waiter->isWaiting()) continue;
    KJ_IF_MAYBE(fd, link) {
      waiter->fulfill(kj::mv(*fd));
      link = nullptr;
    } else {
      still.add(kj::mv(waiter));
    }
  }
  waiting = kj::mv(still);
  unclaimed = kj::mv(link);
  ask();
}

void SupervisedRecorderSource::fail(kj::Exception&& exception) {
  // Final: the supervisor is gone or will start no recorder, so the socket is of no more use.
  readable.remove();
  asked = false;
  control = nullptr;
  unclaimed = nullptr;
  for (auto& waiter : waiting) {
    if (waiter->isWaiting()) waiter->reject(kj::cp(exception));
  }
  waiting.clear();
  failure = kj::mv(exception);
}

}  // namespace tlstap
