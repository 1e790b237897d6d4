#include "server/service/auth.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "tests/support/test_support.h"

namespace tensorcast {
namespace {

using ::tensorcast::testing::TempDir;

const std::string kA(32, 'a');
const std::string kB(32, 'b');
const std::string kC(32, 'c');

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

TEST(ParseTokenFileTest, LinesOptionsAndDefaults) {
  TenantLimits defaults{1 << 20, 10, 4};
  absl::StatusOr<std::vector<TokenEntry>> e =
      ParseTokenFile("# comment\n\n" + kA + " alice quota=2GiB admin\n" + kB +
                         "  bob tensors=3 streams=0\n",
                     defaults);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->size(), 2u);
  EXPECT_EQ((*e)[0].tenant, "alice");
  EXPECT_EQ((*e)[0].limits.max_bytes, int64_t{2} << 30);
  EXPECT_EQ((*e)[0].limits.max_tensors, 10);  // the default
  EXPECT_TRUE((*e)[0].admin);
  EXPECT_EQ((*e)[1].limits.max_bytes, 1 << 20);
  EXPECT_EQ((*e)[1].limits.max_tensors, 3);
  EXPECT_EQ((*e)[1].limits.max_streams, 0);
  EXPECT_FALSE((*e)[1].admin);
}

TEST(ParseTokenFileTest, BadLinesAreNamed) {
  for (const auto& [text, line] : std::vector<std::pair<std::string, int>>{
           {kA + "\n", 1},
           {"\nshort alice\n", 2},
           {kA + " al/ice\n", 1},
           {kA + " alice quota=lots\n", 1},
           {kA + " alice tensors=-1\n", 1},
           {kA + " alice root\n", 1},
           {kA + " alice\n" + kA + " bob\n", 2},
       }) {
    absl::StatusOr<std::vector<TokenEntry>> e = ParseTokenFile(text, {});
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(e.status().message().find("line " + std::to_string(line)),
              std::string::npos)
        << e.status();
  }
}

TEST(AuthenticatorTest, OffMeansTheDefaultTenantWithAdmin) {
  absl::StatusOr<std::unique_ptr<Authenticator>> auth =
      Authenticator::Create("", {});
  ASSERT_TRUE(auth.ok());
  EXPECT_FALSE((*auth)->enabled());
  absl::StatusOr<Caller> c = (*auth)->AuthenticateToken("");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->tenant, nullptr);
  EXPECT_TRUE(c->admin);
}

TEST(AuthenticatorTest, TokensReloadKeepsTenantsAndRefusesRemovedTokens) {
  TempDir dir;
  const std::string path = dir.File("tokens");
  Write(path, kA + " alice admin\n" + kB + " bob quota=1MiB\n");
  absl::StatusOr<std::unique_ptr<Authenticator>> auth =
      Authenticator::Create(path, {});
  ASSERT_TRUE(auth.ok()) << auth.status();
  absl::StatusOr<Caller> alice = (*auth)->AuthenticateToken(kA);
  absl::StatusOr<Caller> bob = (*auth)->AuthenticateToken(kB);
  ASSERT_TRUE(alice.ok() && bob.ok());
  EXPECT_TRUE(alice->admin);
  EXPECT_FALSE(bob->admin);
  EXPECT_EQ(bob->tenant->limits().max_bytes, 1 << 20);
  EXPECT_EQ((*auth)->AuthenticateToken(kC).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ((*auth)->AuthenticateToken("").status().code(),
            absl::StatusCode::kUnauthenticated);

  // bob's token goes, a new one for bob comes with a bigger quota.
  Write(path, kA + " alice admin\n" + kC + " bob quota=2MiB\n");
  absl::StatusOr<int> n = (*auth)->Reload();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2);
  EXPECT_EQ((*auth)->AuthenticateToken(kB).status().code(),
            absl::StatusCode::kUnauthenticated);
  absl::StatusOr<Caller> bob2 = (*auth)->AuthenticateToken(kC);
  ASSERT_TRUE(bob2.ok());
  EXPECT_EQ(bob2->tenant, bob->tenant) << "the same tenant, what it holds kept";
  EXPECT_EQ(bob->tenant->limits().max_bytes, 2 << 20);

  // A broken file leaves the tokens as they were.
  Write(path, kA + " alice\n" + kA + " alice\n");
  EXPECT_FALSE((*auth)->Reload().ok());
  EXPECT_TRUE((*auth)->AuthenticateToken(kC).ok());
  EXPECT_TRUE((*auth)->AuthenticateToken(kA)->admin);
  EXPECT_EQ((*auth)->Tenants().size(), 2u);
}

// Revocation: a reload that drops a token (or moves it to another tenant)
// cancels the calls running with it, refuses new ones and stops a commit;
// calls of the tokens that stay are left alone.
TEST(AuthenticatorTest, ReloadCancelsTheCallsOfRemovedTokens) {
  TempDir dir;
  const std::string path = dir.File("tokens");
  Write(path, kA + " alice\n" + kB + " bob\n" + kC + " carol\n");
  absl::StatusOr<std::unique_ptr<Authenticator>> auth =
      Authenticator::Create(path, {});
  ASSERT_TRUE(auth.ok()) << auth.status();
  absl::StatusOr<Caller> alice = (*auth)->AuthenticateToken(kA);
  absl::StatusOr<Caller> bob = (*auth)->AuthenticateToken(kB);
  absl::StatusOr<Caller> carol = (*auth)->AuthenticateToken(kC);
  ASSERT_TRUE(alice.ok() && bob.ok() && carol.ok());
  int alice_cancelled = 0, bob_cancelled = 0, carol_cancelled = 0;
  LiveCall alice_call, alice_done, bob_call, carol_call;
  ASSERT_TRUE(alice_call.Start(*alice, [&] { ++alice_cancelled; }).ok());
  ASSERT_TRUE(alice_done.Start(*alice, [&] { ++alice_cancelled; }).ok());
  ASSERT_TRUE(bob_call.Start(*bob, [&] { ++bob_cancelled; }).ok());
  ASSERT_TRUE(carol_call.Start(*carol, [&] { ++carol_cancelled; }).ok());
  EXPECT_EQ(alice->credential->calls(), 2u);
  // A call whose work is committed is no longer cancelled.
  bool ran = false;
  EXPECT_TRUE(alice_done
                  .Commit([&] {
                    ran = true;
                    return absl::OkStatus();
                  })
                  .ok());
  EXPECT_TRUE(ran);
  EXPECT_EQ(alice->credential->calls(), 1u);

  // alice's token goes; carol's moves to another tenant; bob's stays.
  Write(path, kB + " bob\n" + kC + " dave\n");
  ASSERT_TRUE((*auth)->Reload().ok());
  EXPECT_EQ(alice_cancelled, 1);
  EXPECT_EQ(carol_cancelled, 1);
  EXPECT_EQ(bob_cancelled, 0);
  EXPECT_TRUE(alice_call.revoked());
  EXPECT_TRUE(carol_call.revoked());
  EXPECT_FALSE(bob_call.revoked());
  EXPECT_EQ((*auth)->AuthenticateToken(kB)->credential, bob->credential);
  EXPECT_EQ((*auth)->AuthenticateToken(kC)->tenant->name(), "dave");

  // A commit after the revocation does not run; a call authenticated
  // before it cannot start after it.
  ran = false;
  absl::Status s = alice_call.Commit([&] {
    ran = true;
    return absl::OkStatus();
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_NE(s.message().find("revoked"), std::string::npos) << s;
  EXPECT_FALSE(ran);
  LiveCall late;
  EXPECT_EQ(late.Start(*alice, [] {}).code(),
            absl::StatusCode::kUnauthenticated);
  // An ended call is forgotten.
  bob_call.End();
  EXPECT_EQ(bob->credential->calls(), 0u);
  bob->credential->Revoke();
  EXPECT_EQ(bob_cancelled, 0);
  // Without authentication there is nothing to revoke.
  LiveCall open;
  EXPECT_TRUE(open.Start(Caller{nullptr, true, nullptr}, [] {}).ok());
  EXPECT_FALSE(open.revoked());
  EXPECT_TRUE(open.Commit([] { return absl::OkStatus(); }).ok());
}

TEST(AuthenticatorTest, EmptyOrMissingFileIsRefusedAtStart) {
  TempDir dir;
  Write(dir.File("empty"), "# nobody\n");
  EXPECT_EQ(Authenticator::Create(dir.File("empty"), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Authenticator::Create(dir.File("missing"), {}).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tensorcast
