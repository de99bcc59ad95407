#pragma once
#define SDPAL_VERSION "0.1.0"
