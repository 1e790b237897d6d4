#include "server/service/auth.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/size.h"

namespace tensorcast {
namespace {

constexpr size_t kMinTokenBytes = 16;
constexpr size_t kMaxTokenBytes = 256;
constexpr size_t kMaxTenantBytes = 64;
constexpr char kUnauthenticated[] =
    "a valid bearer token is required (metadata 'authorization: Bearer "
    "TOKEN'; the CLI's --token or $TENSORCAST_TOKEN)";

bool ValidToken(absl::string_view t) {
  if (t.size() < kMinTokenBytes || t.size() > kMaxTokenBytes) return false;
  for (char c : t) {
    if (!absl::ascii_isgraph(c)) return false;
  }
  return true;
}

bool ValidTenant(absl::string_view t) {
  if (t.empty() || t.size() > kMaxTenantBytes) return false;
  for (char c : t) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<std::vector<TokenEntry>> ParseTokenFile(
    absl::string_view text, const TenantLimits& defaults) {
  std::vector<TokenEntry> entries;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("token file line ", line_no, ": ", why));
    };
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() < 2) return bad("expected 'TOKEN TENANT [options]'");
    TokenEntry e;
    e.token = std::string(fields[0]);
    e.tenant = std::string(fields[1]);
    e.limits = defaults;
    if (!ValidToken(e.token)) {
      return bad(absl::StrCat("a token is ", kMinTokenBytes, " to ",
                              kMaxTokenBytes,
                              " printable characters without spaces"));
    }
    if (!ValidTenant(e.tenant)) {
      return bad(absl::StrCat("a tenant is 1 to ", kMaxTenantBytes,
                              " of A-Z a-z 0-9 _ . -"));
    }
    for (size_t i = 2; i < fields.size(); ++i) {
      absl::string_view f = fields[i];
      if (f == "admin") {
        e.admin = true;
      } else if (absl::ConsumePrefix(&f, "quota=")) {
        absl::StatusOr<int64_t> size = ParseSize(f);
        if (!size.ok())
          return bad(absl::StrCat("quota: ", size.status().message()));
        e.limits.max_bytes = *size;
      } else if (absl::ConsumePrefix(&f, "tensors=")) {
        if (!absl::SimpleAtoi(f, &e.limits.max_tensors) ||
            e.limits.max_tensors < 0) {
          return bad("tensors= takes a count");
        }
      } else if (absl::ConsumePrefix(&f, "streams=")) {
        if (!absl::SimpleAtoi(f, &e.limits.max_streams) ||
            e.limits.max_streams < 0) {
          return bad("streams= takes a count");
        }
      } else {
        return bad(absl::StrCat("unknown option '", f,
                                "' (quota=SIZE, tensors=N, streams=N, admin)"));
      }
    }
    for (const TokenEntry& other : entries) {
      if (other.token == e.token) return bad("the token is listed twice");
    }
    entries.push_back(std::move(e));
  }
  return entries;
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Create(
    std::string path, TenantLimits defaults) {
  std::unique_ptr<Authenticator> auth(
      new Authenticator(std::move(path), defaults));
  if (!auth->enabled()) return auth;
  absl::StatusOr<int> n = auth->Reload();
  if (!n.ok()) return n.status();
  if (*n == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(auth->path_, " names no tokens: nobody could connect"));
  }
  return auth;
}

absl::StatusOr<int> Authenticator::Reload() {
  if (!enabled()) return 0;
  std::ifstream in(path_);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path_));
  }
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<std::vector<TokenEntry>> entries =
      ParseTokenFile(text.str(), defaults_);
  if (!entries.ok()) {
    return absl::Status(entries.status().code(),
                        absl::StrCat(path_, ": ", entries.status().message()));
  }
  std::vector<std::shared_ptr<Credential>> revoked;
  int tokens;
  {
    MutexLock lock(&mu_);
    absl::flat_hash_map<std::string, Grant> by_token;
    for (const TokenEntry& e : *entries) {
      TenantPtr& tenant = tenants_[e.tenant];
      if (tenant == nullptr) {
        tenant = std::make_shared<Tenant>(e.tenant, e.limits);
      } else {
        tenant->Update(e.limits);
      }
      // A token that stays with its tenant keeps its standing (and its
      // running calls); one that moves to another starts afresh.
      std::shared_ptr<Credential> credential;
      auto old = by_token_.find(e.token);
      if (old != by_token_.end() && old->second.tenant == tenant) {
        credential = old->second.credential;
      } else {
        credential = std::make_shared<Credential>();
      }
      by_token[e.token] = Grant{tenant, e.admin, std::move(credential)};
    }
    for (const auto& [token, grant] : by_token_) {
      auto now = by_token.find(token);
      if (now == by_token.end() || now->second.credential != grant.credential) {
        // Before anyone can see the new tokens: a Put that finishes after
        // its token is seen gone must not store.
        grant.credential->Refuse();
        revoked.push_back(grant.credential);
      }
    }
    by_token_ = std::move(by_token);
    tokens = static_cast<int>(by_token_.size());
  }
  // The running calls of removed tokens are cancelled now, outside the
  // lock (Authenticate need not wait for gRPC).
  for (const std::shared_ptr<Credential>& credential : revoked) {
    credential->Revoke();
  }
  return tokens;
}

absl::StatusOr<Caller> Authenticator::AuthenticateToken(
    absl::string_view token) const {
  if (!enabled()) return Caller{nullptr, true, nullptr};
  ReaderMutexLock lock(&mu_);
  auto it = by_token_.find(token);
  if (token.empty() || it == by_token_.end()) {
    return absl::UnauthenticatedError(kUnauthenticated);
  }
  return Caller{it->second.tenant, it->second.admin, it->second.credential};
}

absl::StatusOr<Caller> Authenticator::Authenticate(
    const grpc::ServerContextBase& ctx) const {
  if (!enabled()) return Caller{nullptr, true, nullptr};
  const auto& metadata = ctx.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError(kUnauthenticated);
  }
  absl::string_view value(it->second.data(), it->second.size());
  // RFC 6750: the scheme is case-insensitive.
  if (value.size() < 7 ||
      !absl::EqualsIgnoreCase(value.substr(0, 7), "bearer ")) {
    return absl::UnauthenticatedError(kUnauthenticated);
  }
  return AuthenticateToken(absl::StripAsciiWhitespace(value.substr(7)));
}

absl::Status RevokedError(absl::string_view consequence) {
  return absl::UnauthenticatedError(absl::StrCat(
      "the token of this call was revoked (the server re-read its tokens "
      "file) while it ran; ",
      consequence));
}

absl::Status Credential::Register(const void* key,
                                  std::function<void()> cancel) {
  MutexLock lock(&mu_);
  if (revoked_) return RevokedError("the call was refused");
  calls_[key] = std::move(cancel);
  return absl::OkStatus();
}

void Credential::Unregister(const void* key) {
  MutexLock lock(&mu_);
  calls_.erase(key);
}

absl::Status Credential::Commit(const void* key,
                                absl::FunctionRef<absl::Status()> commit) {
  MutexLock lock(&mu_);
  if (revoked_) return RevokedError("nothing was stored");
  absl::Status status = commit();
  if (status.ok()) calls_.erase(key);
  return status;
}

void Credential::Refuse() {
  MutexLock lock(&mu_);
  revoked_ = true;
}

void Credential::Revoke() {
  MutexLock lock(&mu_);
  revoked_ = true;
  // Under the lock: a call unregisters (as it ends) only once its cancel
  // has returned, so none runs on a call that is gone.
  for (auto& [key, cancel] : calls_) cancel();
  calls_.clear();
}

bool Credential::revoked() const {
  MutexLock lock(&mu_);
  return revoked_;
}

size_t Credential::calls() const {
  MutexLock lock(&mu_);
  return calls_.size();
}

absl::Status LiveCall::Start(const Caller& caller,
                             grpc::ServerContextBase* ctx) {
  return Start(caller, [ctx] { ctx->TryCancel(); });
}

absl::Status LiveCall::Start(const Caller& caller,
                             std::function<void()> cancel) {
  End();
  if (caller.credential == nullptr) return absl::OkStatus();
  if (absl::Status s = caller.credential->Register(this, std::move(cancel));
      !s.ok()) {
    return s;
  }
  credential_ = caller.credential;
  return absl::OkStatus();
}

void LiveCall::End() {
  if (credential_ != nullptr) credential_->Unregister(this);
  credential_ = nullptr;
}

bool LiveCall::revoked() const {
  return credential_ != nullptr && credential_->revoked();
}

absl::Status LiveCall::Commit(absl::FunctionRef<absl::Status()> commit) {
  if (credential_ == nullptr) return commit();
  return credential_->Commit(this, commit);
}

std::vector<TenantPtr> Authenticator::Tenants() const {
  ReaderMutexLock lock(&mu_);
  std::vector<TenantPtr> out;
  for (const auto& [name, tenant] : tenants_) out.push_back(tenant);
  return out;
}

}  // namespace tensorcast
