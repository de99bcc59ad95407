#include <cstdio>
int main() { std::puts("sdpal"); return 0; }
