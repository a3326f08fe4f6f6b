@0xeb7f5edd406b869e;
# The only contract between tlstap-front and tlstap-recorder.
#
# The front holds the keys and decrypts; the recorder never sees a key. The front opens one Flow
# per proxied TCP connection and streams the decrypted bytes of both directions into it. The
# recorder turns each Flow into a synthetic TCP connection in pcap form.
#
# The recorder trusts nothing that arrives here: every field is checked, and a Flow that breaks
# the contract is ended with a logged error while every other Flow goes on.

$import "/capnp/c++.capnp".namespace("tlstap::proto");

const maxChunkBytes :UInt32 = 1048576;
# The largest `Chunk.bytes` the recorder accepts. Larger chunks end the flow.

const maxChunksPerBatch :UInt32 = 4096;
# The most chunks one `Flow.data` call may carry.

const maxNameBytes :UInt32 = 255;
# The longest SNI, ALPN, TLS version or cipher name accepted in `FlowMeta`.

const maxFlowBytes :UInt64 = 281474976710656;
# 2^48: the largest `Resume` offset and `Chunk.skip` the recorder accepts. Larger ones end the flow.

interface Recorder {
  # The capability the recorder hands to a front when it connects (the bootstrap interface).

  openFlow @0 (meta :FlowMeta) -> (flow :Flow);
  # Starts recording one proxied connection. The recorder writes the TCP handshake (SYN, SYN-ACK,
  # ACK) at `meta.startTimeUs`. Fails, without affecting other flows, if `meta` is invalid.
  #
  # The initial sequence numbers are a function of the endpoints, `pcapPort` and `startTimeUs`
  # only, so any recorder process derives the same ones for the same `meta`: a flow that the front
  # reopens with `meta.resume` set continues the sequence numbers of the part already recorded,
  # and an analyser reassembles it across files (e.g. after mergecap).

  ping @1 () -> ();
  # Answered at once, whatever the state of the disk. The front calls it every few seconds while
  # the link is up and gives the link up when an answer takes longer than its `--link-timeout`:
  # a cut network or a hung recorder then counts as "recorder gone" (reconnect, resend), instead
  # of holding the front's queues until TCP itself gives up, which takes many minutes.
}

struct Endpoint {
  # One end of a proxied TCP connection as it should appear in the capture.

  address @0 :Data;
  # The raw IP address in network byte order: 4 bytes for IPv4, 16 bytes for IPv6. Both ends of
  # one flow must be of the same family.

  port @1 :UInt16;
  # The TCP port. Zero is invalid.
}

struct FlowMeta {
  # Everything the recorder needs to know about a connection before its first byte.

  client @0 :Endpoint;
  # The real client address and port, as accepted by the front.

  server @1 :Endpoint;
  # The address the client connected to (with --connect) or the resolved upstream address (SNI
  # routing). Its port is ignored in favour of `pcapPort`.

  pcapPort @2 :UInt16;
  # The server port to write into the capture (the PCAPPORT of `-p`), e.g. 80 for decrypted HTTPS.

  sni @3 :Text;
  # Server name from the ClientHello, empty if none was sent.

  alpn @4 :Text;
  # The application protocol negotiated with the client (e.g. "h2"), empty if none.

  tlsVersion @5 :Text;
  # Negotiated TLS version, e.g. "TLS1.3".

  cipher @6 :Text;
  # Negotiated cipher suite name.

  startTimeUs @7 :Int64;
  # When the front accepted the connection, in microseconds since the Unix epoch (UTC).

  resume @8 :Resume;
  # Null for a new connection. Set when the front reopens a connection that was partly recorded
  # over an earlier link (the link broke, or the recorder was restarted): the recorder writes no
  # handshake and continues the sequence numbers from these offsets. Every other field must be as
  # in the first openFlow of this connection.
}

struct Resume {
  # Where a reopened flow continues, per direction. An offset counts the bytes of that direction
  # the recorder acknowledged (their `Flow.data` call returned) plus the bytes the front could not
  # record and skipped (`Chunk.skip`). Each is at most `maxFlowBytes`.

  clientOffset @0 :UInt64;
  serverOffset @1 :UInt64;

  clientFin @2 :Bool;
  serverFin @3 :Bool;
  # That side's FIN was acknowledged: it sends nothing more.
}

enum Direction {
  # Which way a chunk of plaintext travelled.
  clientToServer @0;
  serverToClient @1;
}

struct Chunk {
  # A run of decrypted bytes read by the front from one side, or the end of one side.

  direction @0 :Direction;
  # The side that sent these bytes. Any value other than the two enumerants ends the flow.

  timeUs @1 :Int64;
  # When the front read the bytes, microseconds since the Unix epoch. Within one flow timestamps
  # never go backwards; a chunk whose time is earlier than the previous one ends the flow.

  bytes @2 :Data;
  # The plaintext, at most `maxChunkBytes`. May be empty when `fin` is set.

  fin @3 :Bool;
  # This side sent its last byte (a TCP FIN after `bytes`). More data from a finished side ends
  # the flow. The other side may go on sending (a half-closed connection).

  skip @4 :UInt64;
  # Bytes this side sent just before `bytes` that the front relayed but could not record
  # (`--recorder-down pass` while the recorder was gone). The sequence numbers jump over them, so
  # an analyser sees the gap ("previous segment not captured") instead of silently joined data.
  # At most `maxFlowBytes`; a skip from a finished side ends the flow.
}

interface Flow {
  # One proxied connection being recorded. Dropping the capability without `close` leaves the
  # connection open in the capture, as a cut capture would.

  data @0 (chunks :List(Chunk)) -> stream;
  # Appends a batch of chunks, in the order they were read. Batching many small chunks into one
  # call is what keeps the link fast; the stream gives the front flow control (backpressure).
  # The call returns only once the packets made from the batch have been handed to the kernel
  # (written to the pcap file descriptor), so a front that keeps every batch until its call
  # returned loses nothing when the recorder process dies.

  close @1 (how :Close) -> ();
  # Ends the connection. Any call after `close` is a contract violation.
}

struct Close {
  # How and when a proxied connection ended.

  timeUs @0 :Int64;
  # When the front saw the end, microseconds since the Unix epoch; not before the last chunk.

  union {
    fin @1 :Void;
    # Orderly close: every side that has not yet sent a FIN sends one now (client first).

    reset @2 :Direction;
    # Abortive close: the side named here sent a TCP RST.
  }
}
