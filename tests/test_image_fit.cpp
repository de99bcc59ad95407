// Fitting an init image of another size (A1111's resize modes): what each mode keeps and cuts.
#include <gtest/gtest.h>

#include <string>

#include "formats/image.h"
#include "formats/png.h"
#include "support/cli.h"
#include "support/fixtures.h"
#include "support/temp_dir.h"

namespace sdpal {
namespace {

// w x h, left half red, right half blue, row 0 green (to see the vertical placement).
Image halves(int w, int h) {
  Image im;
  im.width = w;
  im.height = h;
  im.rgb.assign(static_cast<size_t>(w) * h * 3, 0);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* px = &im.rgb[(static_cast<size_t>(y) * w + x) * 3];
      if (y == 0) px[1] = 255;
      else px[x < w / 2 ? 0 : 2] = 255;
    }
  return im;
}

const uint8_t* at(const Image& im, int x, int y) {
  return &im.rgb[(static_cast<size_t>(y) * im.width + x) * 3];
}

TEST(ImageFit, SameSizeIsUntouched) {
  const Image a = halves(8, 6);
  std::string what = "x";
  const Image b = fit_image(a, 8, 6, ResizeMode::crop, &what);
  EXPECT_EQ(b.rgb, a.rgb);
  EXPECT_EQ(what, "");
}

TEST(ImageFit, CropKeepsTheCentreAndTheAspectRatio) {
  std::string what;
  // 40x20 -> 20x20: scale 1, the middle 20 columns (10 red, then 10 blue) are kept.
  const Image b = fit_image(halves(40, 20), 20, 20, ResizeMode::crop, &what);
  ASSERT_EQ(b.width, 20);
  ASSERT_EQ(b.height, 20);
  EXPECT_EQ(at(b, 2, 10)[0], 255);
  EXPECT_EQ(at(b, 17, 10)[2], 255);
  EXPECT_EQ(at(b, 5, 0)[1], 255);  // no rows cut: the green top row is still on top
  EXPECT_NE(what.find("cropped to 20x20"), std::string::npos) << what;
}

TEST(ImageFit, FillPadsWithEdgePixels) {
  std::string what;
  // 40x20 -> 40x40: scale 1, 10 rows of padding above (copies of the green row) and below.
  const Image b = fit_image(halves(40, 20), 40, 40, ResizeMode::fill, &what);
  ASSERT_EQ(b.height, 40);
  for (int y = 0; y <= 10; ++y) EXPECT_EQ(at(b, 3, y)[1], 255) << y;
  EXPECT_EQ(at(b, 3, 11)[0], 255);
  EXPECT_EQ(at(b, 3, 39)[0], 255);
  EXPECT_EQ(at(b, 36, 39)[2], 255);
  EXPECT_NE(what.find("filled with edge pixels"), std::string::npos) << what;
}

TEST(ImageFit, StretchSaysTheAspectRatioIsLost) {
  std::string what;
  const Image b = fit_image(halves(40, 20), 20, 20, ResizeMode::stretch, &what);
  EXPECT_EQ(b.width, 20);
  EXPECT_EQ(at(b, 2, 10)[0], 255);
  EXPECT_EQ(at(b, 17, 10)[2], 255);
  EXPECT_NE(what.find("aspect ratio not kept"), std::string::npos) << what;
}

class ImageFitCli : public test::TempDirTest {};

TEST_F(ImageFitCli, GenerateSaysHowTheInitImageWasFitted) {
  SDPAL_REQUIRE_FIXTURES();
  write_png(path("wide.png"), halves(128, 32));
  for (const std::string mode : {"crop", "fill", "stretch"}) {
    const auto r = test::run_cli({"generate", "--model", test::model_dir("tiny-sd1"), "--prompt",
                                  "x", "--steps", "2", "--width", "64", "--height", "64",
                                  "--init-image", path("wide.png"), "--resize-mode", mode,
                                  "--output", path(mode + ".png")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("--init-image " + path("wide.png") + ": resized 128x32"),
              std::string::npos)
        << r.err;
  }
  const auto bad = test::run_cli({"generate", "--model", test::model_dir("tiny-sd1"),
                                  "--init-image", path("wide.png"), "--resize-mode", "squash"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--resize-mode"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace sdpal
