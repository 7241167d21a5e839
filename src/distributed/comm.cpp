// The launcher's environment and the single-rank communicator (comm.hpp); MPI's is in comm_mpi.cpp.
#include "distributed/comm.hpp"

#include <cstdlib>

#include "core/error.hpp"

namespace stretch {

namespace {

int env_int(const std::function<const char*(const char*)>& getenv, const char* name, int lo, int hi) {
  const char* v = getenv(name);
  std::string s = v ? v : "";
  std::size_t used = 0;
  long x = 0;
  try {
    x = std::stol(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s.size() || x < lo || x > hi)
    throw UsageError("environment variable " + std::string(name) + "='" + s + "': expected an integer in [" +
                     std::to_string(lo) + ", " + std::to_string(hi) + "] (set by the MPI launcher)");
  return static_cast<int>(x);
}

class SingleComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(float*, std::size_t) override {}
  void allreduce_sum(double*, std::size_t) override {}
  void broadcast(float*, std::size_t, int) override {}
  bool same_on_all(std::uint64_t) override { return true; }
  [[noreturn]] void abort_job(int code) noexcept override { std::_Exit(code); }
};

}  // namespace

LaunchInfo detect_launch(const std::function<const char*(const char*)>& getenv) {
  const struct {
    const char *size, *rank;
  } vars[] = {{"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"}, {"PMI_SIZE", "PMI_RANK"}};
  for (const auto& v : vars) {
    if (!getenv(v.size)) continue;
    LaunchInfo info;
    info.source = v.size;
    info.size = env_int(getenv, v.size, 1, 1 << 20);
    info.rank = env_int(getenv, v.rank, 0, info.size - 1);
    return info;
  }
  return {};
}

LaunchInfo detect_launch() {
  return detect_launch([](const char* name) -> const char* { return std::getenv(name); });
}

Comm& single_comm() {
  static SingleComm c;
  return c;
}

void require_mpi_for(const LaunchInfo& launch, bool built_with_mpi) {
  if (launch.size > 1 && !built_with_mpi)
    throw UsageError("launched as " + std::to_string(launch.size) + " ranks (" + launch.source + "), but this "
                     "stretch was built without MPI: install libopenmpi-dev and openmpi-bin (scripts/install-deps.sh "
                     "does), configure again with -DSTRETCH_MPI=ON (the default) and rebuild; or run without mpirun");
}

#ifndef STRETCH_HAVE_MPI
bool mpi_built() { return false; }

Comm& world_comm() {
  require_mpi_for(detect_launch(), false);
  return single_comm();
}
#endif

}  // namespace stretch
