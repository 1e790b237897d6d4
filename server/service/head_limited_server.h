// A cpp-httplib server whose requests' heads are bounded, for the HTTP
// listeners (--metrics-listen, --http-listen).
//
// httplib 0.11 gathers a request line or header line until its newline and
// checks its length only then, so a client that sends no newline fills the
// server's memory; and each read waits only for the read timeout, so a
// client that sends a byte every few seconds holds a worker for as long as
// it likes. The server made here reads each request's head -- its request
// line and headers -- through a stream that fails once the head passes
// `max_head_bytes` or `head_seconds` from the start of the request, and
// httplib then drops the connection; so it does after answering a request
// whose head it could not parse (whatever follows is the rest of that
// request). Bodies are read as httplib reads them. Plaintext only: an
// httplib::SSLServer reads through its own stream.
#ifndef TENSORCAST_SERVER_SERVICE_HEAD_LIMITED_SERVER_H_
#define TENSORCAST_SERVER_SERVICE_HEAD_LIMITED_SERVER_H_

#include <cstdint>
#include <memory>

namespace httplib {
class Server;
}

namespace tensorcast {

// An httplib::Server to configure and start as any other (its read, write
// and keep-alive settings apply as they do to httplib's own).
std::unique_ptr<httplib::Server> NewHeadLimitedServer(int64_t max_head_bytes,
                                                      int head_seconds);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_SERVICE_HEAD_LIMITED_SERVER_H_
