#include "mock/mock.hpp"

int main(int argc, char** argv) {
  return meridian::loadtest::mock_main(argc, argv);
}
