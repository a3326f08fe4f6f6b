// Choosing the run-time user and dropping to it for good.
#include "sandbox/privileges.h"

#include <grp.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <kj/debug.h>

#include "tests/sandbox/sandbox-test-support.h"

namespace tlstap {
namespace {

class Privileges : public test::PolicyTest {};

TEST_F(Privileges, LooksUpUsersByName) {
  UserIdentity user;
  EXPECT_EQ(lookUpUser("root", user), nullptr);
  EXPECT_EQ(user.uid, 0u);
  KJ_IF_MAYBE(error, lookUpUser("no-such-user-tlstap", user)) {
    EXPECT_EQ(*error, "no such user 'no-such-user-tlstap'");
  } else {
    ADD_FAILURE() << "a missing user was found";
  }
}

TEST_F(Privileges, RootStartNeedsTheDefaultUserOrAnUnprivilegedOne) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  kj::Maybe<UserIdentity> out;
  KJ_IF_MAYBE(error, chooseRunAsUser("--user", nullptr, "no-such-user-tlstap", out)) {
    EXPECT_TRUE(error->startsWith("--user: started as root, and the default user "
                                  "'no-such-user-tlstap' does not exist"))
        << error->cStr();
  } else {
    ADD_FAILURE() << "a missing default user was accepted";
  }
  KJ_IF_MAYBE(error, chooseRunAsUser("--user", kj::str("root"), "nobody", out)) {
    EXPECT_EQ(*error, "--user: 'root' is root; give an unprivileged user");
  } else {
    ADD_FAILURE() << "root was accepted as the run-time user";
  }
  EXPECT_EQ(chooseRunAsUser("--user", kj::str("nobody"), "no-such-user-tlstap", out), nullptr);
  EXPECT_EQ(KJ_ASSERT_NONNULL(out).name, "nobody");
  EXPECT_NE(KJ_ASSERT_NONNULL(out).uid, 0u);
}

void dropToNobody() {
  UserIdentity nobody;
  if (lookUpUser("nobody", nobody) != nullptr) _exit(3);
  if (dropPrivileges(nobody) != nullptr) _exit(4);
  if (setNoNewPrivs() != nullptr) _exit(5);
  gid_t groups[8];
  int count = getgroups(8, groups);
  bool rootGroup = false;
  for (int i = 0; i < count; i++) rootGroup |= groups[i] == 0;
  bool ok = getuid() == nobody.uid && geteuid() == nobody.uid && getgid() == nobody.gid &&
            !rootGroup && setuid(0) != 0 && setgid(0) != 0 &&
            prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1;
  _exit(ok ? 0 : 1);
}

TEST_F(Privileges, DropIsForGoodWithoutRootGroups) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  EXPECT_EXIT(dropToNobody(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace tlstap
