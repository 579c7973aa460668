#include <doctest/doctest.h>
#include <yaml-cpp/yaml.h>

#include "config/sections.hpp"

TEST_CASE("the effective config hides secret values, keeps paths to them and everything else") {
  auto root = YAML::Load(R"(
admin: { address: 127.0.0.1:9901, token_file: /run/secrets/admin }
clusters:
  - name: openai
    headers: { Authorization: Bearer sk-123, x-api-key: k-456 }
    auth: { api_key: k-789, client_secret: s-1, password: p-2, Token: t-3 }
)");
  auto y = meridian::config::redacted_yaml(root);
  for (const char* gone : {"sk-123", "k-456", "k-789", "s-1", "p-2", "t-3"}) {
    CAPTURE(gone);
    CHECK(y.find(gone) == std::string::npos);
  }
  CHECK(y.find("token_file: /run/secrets/admin") != std::string::npos);
  CHECK(y.find("Authorization: <redacted>") != std::string::npos);
  CHECK(y.find("name: openai") != std::string::npos);
  CHECK(y.find("address: 127.0.0.1:9901") != std::string::npos);
}

TEST_CASE("header-match values and values that look like credentials are hidden too") {
  auto root = YAML::Load(R"(
clusters:
  - name: s3
    endpoints: [ "http://minio:pw-secret@10.0.0.5:9000", 10.0.0.6:9000 ]
    note: sk-live-abcdef0123
routes:
  - name: internal
    match: { path_prefix: /v1/, headers: { x-internal-auth: shared-phrase-42, x-team: blue } }
    cluster: s3
  - { name: hf, match: { path: /x }, cluster: s3, comment: hf_abcdefghijk }
)");
  auto y = meridian::config::redacted_yaml(root);
  for (const char* gone : {"pw-secret", "sk-live", "shared-phrase-42", "blue", "hf_abc"}) {
    CAPTURE(gone);
    CHECK(y.find(gone) == std::string::npos);
  }
  CHECK(y.find("x-internal-auth: <redacted>") != std::string::npos);
  CHECK(y.find("10.0.0.6:9000") != std::string::npos);
  CHECK(y.find("path_prefix: /v1/") != std::string::npos);
  CHECK(y.find("name: internal") != std::string::npos);
}
