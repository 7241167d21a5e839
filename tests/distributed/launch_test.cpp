// The launcher's environment (distributed/comm.hpp): which variables give the world size and rank, what a
// malformed value says, the single-rank communicator, and the refusal of several ranks without MPI.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "core/error.hpp"
#include "distributed/comm.hpp"

namespace stretch {
namespace {

LaunchInfo launch_with(const std::map<std::string, std::string>& env) {
  return detect_launch([&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

std::string usage_error(const std::map<std::string, std::string>& env) {
  try {
    launch_with(env);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

TEST(Launch, NoLauncherIsOneRank) {
  const LaunchInfo l = launch_with({});
  EXPECT_EQ(l.size, 1);
  EXPECT_EQ(l.rank, 0);
  EXPECT_EQ(l.source, "");
}

TEST(Launch, OpenMpiAndPmiVariables) {
  LaunchInfo l = launch_with({{"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_RANK", "3"}});
  EXPECT_EQ(l.size, 4);
  EXPECT_EQ(l.rank, 3);
  EXPECT_EQ(l.source, "OMPI_COMM_WORLD_SIZE");
  l = launch_with({{"PMI_SIZE", "2"}, {"PMI_RANK", "1"}});
  EXPECT_EQ(l.size, 2);
  EXPECT_EQ(l.rank, 1);
  EXPECT_EQ(l.source, "PMI_SIZE");
  // Open MPI's variables win when both are set (its mpirun may export PMI ones too)
  l = launch_with({{"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "0"}, {"PMI_SIZE", "8"}, {"PMI_RANK", "5"}});
  EXPECT_EQ(l.size, 2);
  EXPECT_EQ(l.rank, 0);
}

TEST(Launch, MalformedValuesNameTheVariable) {
  EXPECT_NE(usage_error({{"OMPI_COMM_WORLD_SIZE", "two"}, {"OMPI_COMM_WORLD_RANK", "0"}}).find("OMPI_COMM_WORLD_SIZE='two'"),
            std::string::npos);
  EXPECT_NE(usage_error({{"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "2"}}).find("OMPI_COMM_WORLD_RANK='2'"),
            std::string::npos);  // rank must be below size
  EXPECT_NE(usage_error({{"OMPI_COMM_WORLD_SIZE", "2"}}).find("OMPI_COMM_WORLD_RANK=''"), std::string::npos);
  EXPECT_NE(usage_error({{"PMI_SIZE", "0"}, {"PMI_RANK", "0"}}).find("PMI_SIZE='0'"), std::string::npos);
  EXPECT_NE(usage_error({{"PMI_SIZE", "2x"}, {"PMI_RANK", "0"}}).find("expected an integer"), std::string::npos);
}

TEST(Launch, SeveralRanksNeedMpi) {
  const LaunchInfo two = launch_with({{"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "1"}});
  try {
    require_mpi_for(two, false);
    ADD_FAILURE() << "a 2-rank launch without MPI was accepted";
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("2 ranks"), std::string::npos) << msg;
    EXPECT_NE(msg.find("built without MPI"), std::string::npos) << msg;
    EXPECT_NE(msg.find("libopenmpi-dev"), std::string::npos) << msg;
  }
  EXPECT_NO_THROW(require_mpi_for(two, true));
  EXPECT_NO_THROW(require_mpi_for(launch_with({}), false));  // one process needs no MPI
}

TEST(Launch, SingleRankCollectivesLeaveDataAlone) {
  Comm& c = single_comm();
  EXPECT_EQ(c.size(), 1);
  EXPECT_EQ(c.rank(), 0);
  float f[3] = {1.5f, -2.0f, 3.25f};
  double d[2] = {0.125, 7.0};
  c.allreduce_sum(f, 3);
  c.allreduce_sum(d, 2);
  c.broadcast(f, 3, 0);
  EXPECT_EQ(f[0], 1.5f);
  EXPECT_EQ(f[1], -2.0f);
  EXPECT_EQ(f[2], 3.25f);
  EXPECT_EQ(d[0], 0.125);
  EXPECT_EQ(d[1], 7.0);
  EXPECT_TRUE(c.same_on_all(42));
  // without a launcher the process's communicator is this one, MPI or not
  EXPECT_EQ(&world_comm(), &single_comm());
}

}  // namespace
}  // namespace stretch
