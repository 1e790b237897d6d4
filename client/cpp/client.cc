#include "client/cpp/client.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/support/sync_stream.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/cpp/fetch_decoder.h"
#include "client/cpp/generic_call.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace tensorcast {

namespace {
// Large enough for the biggest Fetch chunk a server sends (64 MiB).
constexpr int kMaxMessageBytes = (64 << 20) + (1 << 20);
// The generated stub's name for Fetch, called here with raw responses.
constexpr char kFetchMethod[] = "/tensorcast.v1.TensorService/Fetch";
}  // namespace

absl::Status ErrnoStatus(int error, absl::string_view what) {
  std::string message = absl::StrCat(what, ": ", std::strerror(error));
  switch (error) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case EISDIR:
    case ENAMETOOLONG:
      return absl::InvalidArgumentError(message);
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::UnknownError(message);
  }
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

std::string StatusCodeName(absl::StatusCode code) {
  return absl::StatusCodeToString(code);  // gRPC's spelling
}

absl::Status ReadTlsFiles(const std::string& ca_file,
                          const std::string& cert_file,
                          const std::string& key_file, ClientOptions* options) {
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  const std::pair<const std::string*, std::string*> files[] = {
      {&ca_file, &options->tls_root_certs},
      {&cert_file, &options->tls_cert_chain},
      {&key_file, &options->tls_private_key}};
  const char* flags[] = {"--tls-ca", "--tls-cert", "--tls-key"};
  for (int i = 0; i < 3; ++i) {
    const std::string& path = *files[i].first;
    if (path.empty()) continue;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return absl::InvalidArgumentError(absl::StrCat(
          flags[i], ": cannot read ", path, ": ", std::strerror(errno)));
    }
    std::string text((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    if (text.find("-----BEGIN ") == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(flags[i], ": ", path, " is not a PEM file"));
    }
    *files[i].second = std::move(text);
    options->tls = true;
  }
  return absl::OkStatus();
}

grpc::ChannelArguments DefaultChannelArguments() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  return args;
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(
    const ClientOptions& options) {
  if (!options.tls && options.tls_root_certs.empty() &&
      options.tls_cert_chain.empty() && options.tls_private_key.empty()) {
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = options.tls_root_certs;
  ssl.pem_cert_chain = options.tls_cert_chain;
  ssl.pem_private_key = options.tls_private_key;
  return grpc::SslCredentials(ssl);
}

std::unique_ptr<Client> Client::Connect(const std::string& target,
                                        ClientOptions options) {
  return std::make_unique<Client>(
      grpc::CreateCustomChannel(target, ChannelCredentials(options),
                                DefaultChannelArguments()),
      options);
}

Client::Client(std::shared_ptr<grpc::Channel> channel, ClientOptions options)
    : options_(options),
      channel_(std::move(channel)),
      stub_(v1::TensorService::NewStub(channel_)) {}

void Client::Prepare(grpc::ClientContext* ctx, bool with_deadline) const {
  if (with_deadline && options_.timeout.count() > 0) {
    ctx->set_deadline(std::chrono::system_clock::now() + options_.timeout);
  }
  if (!options_.token.empty()) {
    ctx->AddMetadata("authorization", "Bearer " + options_.token);
  }
}

absl::StatusOr<v1::TensorInfo> Client::Put(const PutOptions& options,
                                           const ByteSource& source,
                                           int64_t total_bytes) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::PutResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::PutRequest>> writer =
      stub_->Put(&ctx, &response);
  v1::PutRequest request;
  v1::PutHeader* header = request.mutable_header();
  header->set_format(options.format);
  header->set_dtype(options.dtype);
  for (int64_t d : options.shape) header->add_shape(d);
  header->set_device(options.device);
  header->set_requires_grad(options.requires_grad);
  header->set_name(options.name);
  header->set_ttl_seconds(options.ttl_seconds);
  header->set_total_bytes(total_bytes);
  header->set_shm_region(options.shm_region);
  header->set_shm_offset(options.shm_offset);
  header->set_shm_bytes(options.shm_bytes);
  bool open = writer->Write(request);
  if (!options.shm_region.empty()) open = false;  // the server reads the data
  absl::Status source_status;
  std::string* data = request.mutable_data();
  const size_t chunk = static_cast<size_t>(std::clamp<int64_t>(
      options_.put_chunk_bytes, 1, codec::kMaxPutChunkBytes));
  while (open) {
    data->resize(chunk);
    absl::StatusOr<size_t> n = source(data->data(), chunk);
    if (!n.ok()) {
      source_status = n.status();
      ctx.TryCancel();  // the server stores nothing from a cancelled Put
      break;
    }
    if (*n == 0) break;
    data->resize(*n);
    open = writer->Write(request);
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (!source_status.ok()) return source_status;
  if (!status.ok()) return FromGrpcStatus(status);
  return response.tensor();
}

absl::StatusOr<v1::TensorInfo> Client::PutBuffer(const PutOptions& options,
                                                 absl::string_view bytes) {
  size_t pos = 0;
  return Put(
      options,
      [&](char* buffer, size_t size) -> absl::StatusOr<size_t> {
        size_t n = std::min(size, bytes.size() - pos);
        std::memcpy(buffer, bytes.data() + pos, n);
        pos += n;
        return n;
      },
      static_cast<int64_t>(bytes.size()));
}

absl::StatusOr<v1::TensorInfo> Client::PutNpyFile(const std::string& path,
                                                  PutOptions options) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  std::fseek(f, 0, SEEK_END);
  int64_t size = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  options.format = v1::FORMAT_NPY;
  absl::StatusOr<v1::TensorInfo> info = Put(
      options,
      [&](char* buffer, size_t n) -> absl::StatusOr<size_t> {
        size_t got = std::fread(buffer, 1, n, f);
        if (got == 0 && std::ferror(f)) {
          return absl::DataLossError(absl::StrCat("error reading ", path));
        }
        return got;
      },
      size > 0 ? size : 0);
  std::fclose(f);
  return info;
}

absl::StatusOr<v1::FetchHeader> Client::Fetch(absl::string_view ref,
                                              const FetchOptions& options,
                                              const ByteSink& sink) {
  return FetchChecked(ref, options, nullptr, sink);
}

absl::StatusOr<v1::FetchHeader> Client::FetchChecked(
    absl::string_view ref, const FetchOptions& options,
    const std::function<absl::Status(const v1::FetchHeader&)>& check,
    const ByteSink& sink) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::FetchRequest request;
  request.set_ref(std::string(ref));
  request.set_format(options.format);
  request.set_dtype(options.dtype);
  request.set_detach(options.detach);
  request.set_cpu(options.cpu);
  request.set_force(options.force);
  request.set_offset(options.offset);
  request.set_length(options.length);
  request.set_chunk_bytes(options.chunk_bytes);
  request.set_shm_region(options.shm_region);
  request.set_shm_offset(options.shm_offset);
  // The responses are read as raw ByteBuffers and decoded in place, so
  // the sink sees views of gRPC's receive buffers (fetch_decoder.h).
  std::string request_bytes;
  if (!request.SerializeToString(&request_bytes)) {
    return absl::InternalError("cannot serialize the FetchRequest");
  }
  grpc::Slice request_slice(request_bytes);
  GenericCall call(channel_, kFetchMethod, &ctx);
  if (call.Write(grpc::ByteBuffer(&request_slice, 1))) call.WritesDone();
  grpc::ByteBuffer response;
  FetchStreamDecoder decoder;
  decoder.set_header_check(check);
  absl::Status sink_status;
  while (call.Read(&response)) {
    sink_status = decoder.Next(response, sink);
    if (!sink_status.ok()) {
      ctx.TryCancel();
      break;
    }
  }
  grpc::Status status = call.Finish();
  if (!sink_status.ok()) return sink_status;
  if (!status.ok()) return FromGrpcStatus(status);
  const v1::FetchHeader& header = decoder.header();
  if (options.shm_region.empty() && decoder.data_bytes() != header.length()) {
    return absl::DataLossError(absl::StrCat("the stream ended after ",
                                            decoder.data_bytes(), " of ",
                                            header.length(), " bytes"));
  }
  return header;
}

absl::StatusOr<std::string> Client::FetchBytes(absl::string_view ref,
                                               const FetchOptions& options) {
  std::string out;
  absl::StatusOr<v1::FetchHeader> header =
      Fetch(ref, options, [&](absl::string_view bytes) {
        out.append(bytes.data(), bytes.size());
        return absl::OkStatus();
      });
  if (!header.ok()) return header.status();
  return out;
}

absl::StatusOr<v1::FetchHeader> Client::FetchInto(absl::string_view ref,
                                                  const FetchOptions& options,
                                                  char* buffer,
                                                  size_t capacity) {
  size_t pos = 0;
  return Fetch(ref, options, [&](absl::string_view bytes) -> absl::Status {
    if (bytes.size() > capacity - pos) {
      return absl::OutOfRangeError(absl::StrCat(
          "the fetched tensor does not fit the ", capacity, "-byte buffer"));
    }
    std::memcpy(buffer + pos, bytes.data(), bytes.size());
    pos += bytes.size();
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::FetchHeader> Client::FetchInto(absl::string_view ref,
                                                  const FetchOptions& options,
                                                  absl::Span<char> out) {
  size_t pos = 0;
  return FetchChecked(
      ref, options,
      [&](const v1::FetchHeader& header) -> absl::Status {
        if (header.length() != static_cast<int64_t>(out.size())) {
          return absl::InvalidArgumentError(
              absl::StrCat("the fetched tensor has ", header.length(),
                           " bytes; the destination has ", out.size()));
        }
        return absl::OkStatus();
      },
      [&](absl::string_view bytes) -> absl::Status {
        if (bytes.size() > out.size() - pos) {
          return absl::DataLossError(
              "the Fetch stream sent more bytes than its header announced");
        }
        std::memcpy(out.data() + pos, bytes.data(), bytes.size());
        pos += bytes.size();
        return absl::OkStatus();
      });
}

absl::StatusOr<v1::FetchHeader> Client::FetchToFile(absl::string_view ref,
                                                    const FetchOptions& options,
                                                    const std::string& path) {
  // A fresh temporary beside the target (never someone's existing file),
  // renamed over it only when the whole stream arrived.
  std::string part = path + ".part-XXXXXX";
  int fd = mkstemp(part.data());
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("cannot create ", part));
  std::FILE* f = fdopen(fd, "wb");
  if (f == nullptr) {
    absl::Status s = ErrnoStatus(errno, absl::StrCat("cannot open ", part));
    close(fd);
    std::remove(part.c_str());
    return s;
  }
  absl::StatusOr<v1::FetchHeader> header =
      Fetch(ref, options, [&](absl::string_view bytes) -> absl::Status {
        if (std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) {
          return ErrnoStatus(errno, absl::StrCat("error writing ", part));
        }
        return absl::OkStatus();
      });
  bool closed = std::fclose(f) == 0;
  if (header.ok() && !closed) {
    header = ErrnoStatus(errno, absl::StrCat("error closing ", part));
  }
  if (header.ok() && std::rename(part.c_str(), path.c_str()) != 0) {
    header =
        ErrnoStatus(errno, absl::StrCat("cannot rename ", part, " to ", path));
  }
  if (!header.ok()) std::remove(part.c_str());
  return header;
}

absl::Status Client::Call(
    const std::function<grpc::Status(grpc::ClientContext*)>& rpc) const {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  return FromGrpcStatus(rpc(&ctx));
}

absl::StatusOr<v1::TensorInfo> Client::Create(
    const v1::CreateRequest& request) {
  v1::CreateResponse response;
  if (absl::Status s = Call([&](grpc::ClientContext* c) {
        return stub_->Create(c, request, &response);
      });
      !s.ok())
    return s;
  return response.tensor();
}

absl::StatusOr<v1::TensorInfo> Client::Info(absl::string_view ref) {
  v1::InfoRequest request;
  request.set_ref(std::string(ref));
  v1::InfoResponse response;
  if (absl::Status s = Call([&](grpc::ClientContext* c) {
        return stub_->Info(c, request, &response);
      });
      !s.ok())
    return s;
  return response.tensor();
}

absl::StatusOr<std::vector<v1::TensorInfo>> Client::List(
    absl::string_view name_prefix) {
  std::vector<v1::TensorInfo> all;
  v1::ListRequest request;
  request.set_name_prefix(std::string(name_prefix));
  request.set_page_size(1000);
  while (true) {
    v1::ListResponse response;
    if (absl::Status s = Call([&](grpc::ClientContext* c) {
          return stub_->List(c, request, &response);
        });
        !s.ok())
      return s;
    all.insert(all.end(), response.tensors().begin(), response.tensors().end());
    if (response.next_page_token().empty()) return all;
    request.set_page_token(response.next_page_token());
  }
}

absl::StatusOr<int> Client::Delete(const std::vector<std::string>& refs) {
  v1::DeleteRequest request;
  for (const std::string& r : refs) request.add_refs(r);
  v1::DeleteResponse response;
  if (absl::Status s = Call([&](grpc::ClientContext* c) {
        return stub_->Delete(c, request, &response);
      });
      !s.ok())
    return s;
  return response.deleted();
}

absl::StatusOr<v1::TensorInfo> Client::Detach(absl::string_view ref) {
  v1::DetachRequest request;
  request.set_ref(std::string(ref));
  v1::DetachResponse response;
  if (absl::Status s = Call([&](grpc::ClientContext* c) {
        return stub_->Detach(c, request, &response);
      });
      !s.ok())
    return s;
  return response.tensor();
}

absl::StatusOr<v1::TensorInfo> Client::To(const v1::ToRequest& request) {
  v1::ToResponse response;
  if (absl::Status s = Call([&](grpc::ClientContext* c) {
        return stub_->To(c, request, &response);
      });
      !s.ok())
    return s;
  return response.tensor();
}

absl::StatusOr<v1::StatsResponse> Client::Stats() {
  v1::StatsResponse response;
  if (absl::Status s = Call([&](grpc::ClientContext* c) {
        return stub_->Stats(c, v1::StatsRequest(), &response);
      });
      !s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<int64_t> Client::EmptyCache(absl::string_view device) {
  v1::EmptyCacheRequest request;
  request.set_device(std::string(device));
  v1::EmptyCacheResponse response;
  if (absl::Status s = Call([&](grpc::ClientContext* c) {
        return stub_->EmptyCache(c, request, &response);
      });
      !s.ok()) {
    return s;
  }
  return response.released_bytes();
}

absl::Status Client::Health() {
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext ctx;
  std::chrono::milliseconds timeout = options_.timeout.count() > 0
                                          ? options_.timeout
                                          : std::chrono::milliseconds(5000);
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status =
      stub->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::UnavailableError(absl::StrCat(
        "server is ", grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
                          response.status())));
  }
  return absl::OkStatus();
}

}  // namespace tensorcast
