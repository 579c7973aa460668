#include "load/load.hpp"

int main(int argc, char** argv) {
  return meridian::loadtest::load_main(argc, argv);
}
