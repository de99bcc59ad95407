#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "tools/progress.h"

using sdpal::Progress;

namespace {

std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  for (int c; (c = std::fgetc(f)) != EOF;) s += static_cast<char>(c);
  return s;
}

}  // namespace

TEST(Progress, DisabledBarPrintsNothing) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    Progress bar("sampling", 20, /*enabled=*/false, f);
    EXPECT_FALSE(bar.active());
    for (int i = 1; i <= 20; ++i) bar.update(i);
    bar.finish();
  }
  EXPECT_EQ(contents(f), "");
  std::fclose(f);
}

TEST(Progress, NonTerminalStreamPrintsNothing) {
  std::FILE* f = std::tmpfile();  // a regular file, not a terminal: e.g. stderr redirected to a log
  ASSERT_NE(f, nullptr);
  {
    Progress bar("sampling", 3, /*enabled=*/true, f);
    EXPECT_FALSE(bar.active());
    bar.update(1);
    bar.update(3);
  }  // no finish(): the destructor must not print either
  EXPECT_EQ(contents(f), "");
  std::fclose(f);
}

TEST(Progress, TerminalGetsRedrawnLineAndNewline) {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0)
    GTEST_SKIP() << "no pseudo-terminal available";
  std::FILE* term = std::fopen(::ptsname(master), "w");
  ASSERT_NE(term, nullptr);
  {
    Progress bar("sampling", 4, /*enabled=*/true, term);
    ASSERT_TRUE(bar.active());
    bar.update(1);  // first update always draws
    bar.update(4);  // the last step always draws
    bar.finish();
  }
  std::fclose(term);
  std::string got;
  char buf[512];
  ::fcntl(master, F_SETFL, O_NONBLOCK);
  for (ssize_t n; (n = ::read(master, buf, sizeof(buf))) > 0;) got.append(buf, n);
  ::close(master);
  EXPECT_NE(got.find("\rsampling  1/4 [#####---------------]"), std::string::npos) << got;
  EXPECT_NE(got.find("\rsampling  4/4 [####################]"), std::string::npos) << got;
  EXPECT_NE(got.find('\n'), std::string::npos) << got;
}

TEST(Progress, LineFormat) {
  EXPECT_EQ(Progress::format_line("sampling", 12, 20, 12 / 1.85),
            "sampling  12/20 [############--------]  1.85 it/s  ETA 4s");
  // Slower than one step a second: seconds per step, like tqdm.
  EXPECT_EQ(Progress::format_line("sampling", 2, 50, 6.4),
            "sampling   2/50 [--------------------]  3.20 s/it  ETA 2m34s");
  EXPECT_EQ(Progress::format_line("decoding", 0, 1, 0.0),
            "decoding  0/1 [--------------------]  ? it/s  ETA ?");
  EXPECT_EQ(Progress::format_line("sampling", 20, 20, 3725.0, /*finished=*/true),
            "sampling  20/20 [####################]  186.25 s/it  1h02m05s");
}
