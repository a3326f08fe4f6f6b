#include "backend-session-cache.h"

#include <kj/debug.h>
#include <kj/exception.h>

#include "common/password.h"

namespace tlstap {

BackendSessionCache::~BackendSessionCache() noexcept {}

BackendSessionCache::Stored& BackendSessionCache::Stored::operator=(Stored&& other) noexcept {
  if (this != &other) {
    wipe();
    bytes = kj::mv(other.bytes);
  }
  return *this;
}

void BackendSessionCache::Stored::wipe() { tlstap::wipe(bytes.begin(), bytes.size()); }

size_t BackendSessionCache::tickets() const {
  size_t count = 0;
  for (auto& entry : entries) count += entry.value.size();
  return count;
}

void BackendSessionCache::put(kj::StringPtr key, kj::ArrayPtr<const kj::byte> data) {
  Stored stored(kj::heapArray<kj::byte>(data));  // wiped if it is not kept
  KJ_IF_MAYBE(existing, entries.find(key)) {
    auto& list = *existing;
    if (list.size() == TICKETS_PER_BACKEND) {
      for (size_t i = 0; i + 1 < list.size(); i++) list[i] = kj::mv(list[i + 1]);
      list.removeLast();
    }
    list.add(kj::mv(stored));
  } else if (entries.size() < capacity) {
    kj::Vector<Stored> list;
    list.add(kj::mv(stored));
    entries.insert(kj::heapString(key), kj::mv(list));
  }
}

kj::Maybe<BackendSessionCache::Stored> BackendSessionCache::take(kj::StringPtr key) {
  KJ_IF_MAYBE(entry, entries.findEntry(key)) {
    auto& list = entry->value;
    Stored taken = kj::mv(list.back());
    list.removeLast();
    if (list.empty()) entries.erase(*entry);
    return kj::mv(taken);
  }
  return nullptr;
}

BackendSessionCache::Slot::Slot(BackendSessionCache& cache, kj::StringPtr name,
                                kj::StringPtr address)
    : cache(cache), key(kj::str(name, " at ", address)) {}

void BackendSessionCache::Slot::attach(gnutls_session_t session) {
  KJ_IF_MAYBE(stored, cache.take(key)) {
    auto bytes = stored->get();
    // GnuTLS copies what it needs. Data it cannot use (expired, from another version) is not
    // offered: the handshake is a full one.
    gnutls_session_set_data(session, bytes.begin(), bytes.size());
  }
  gnutls_session_set_ptr(session, this);
  gnutls_handshake_set_hook_function(session, GNUTLS_HANDSHAKE_NEW_SESSION_TICKET,
                                     GNUTLS_HOOK_POST, &Slot::onTicket);
}

void BackendSessionCache::Slot::handshakeDone(gnutls_session_t session) {
  if (gnutls_protocol_get_version(session) == GNUTLS_TLS1_2) keep(session);
}

void BackendSessionCache::Slot::keep(gnutls_session_t session) noexcept {
  SecretDatum data;
  if (gnutls_session_get_data2(session, &data.datum) < 0) return;  // nothing resumable
  kj::runCatchingExceptions([&]() {
    cache.put(key, kj::arrayPtr(data.datum.data, data.datum.size));
  });
}

int BackendSessionCache::Slot::onTicket(gnutls_session_t session, unsigned, unsigned,
                                        unsigned incoming, const gnutls_datum_t*) {
  // TLS 1.3 tickets come after the handshake, in the record stream; a TLS 1.2 ticket comes
  // within the handshake, before the session can be packed, and is kept by handshakeDone().
  if (incoming && gnutls_protocol_get_version(session) == GNUTLS_TLS1_3) {
    reinterpret_cast<Slot*>(gnutls_session_get_ptr(session))->keep(session);
  }
  return 0;
}

}  // namespace tlstap
