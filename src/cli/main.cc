#include <cstdio>

int main(int argc, char** argv) {
  std::fprintf(stderr, "dsv4: no commands yet\n");
  return 1;
}
