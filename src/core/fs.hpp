// Files: whole-file reads with clear errors, and atomic writes (temporary file in the same folder, fsync,
// rename, fsync of the folder), so a crash or a full disk never leaves a half-written file under the real name.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace stretch {

// Reads a whole file. Throws InputError naming the file when it is missing or unreadable.
std::string read_file(const std::filesystem::path& path);

// Writes `bytes` to `path` atomically. Throws IoError naming the file on any failure (the old file, if any,
// is left untouched and the temporary file is removed).
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

// Streams content through `fill(write)` into a temporary file, then renames it atomically onto `path`.
// `write(data, n)` appends n bytes; it throws IoError if the disk refuses them.
using ByteSink = std::function<void(const void* data, std::size_t n)>;
void write_file_atomic_streamed(const std::filesystem::path& path, const std::function<void(const ByteSink&)>& fill);

// fsyncs a directory, making a rename inside it durable. Filesystems that cannot open or sync folders are
// skipped; an I/O error (EIO, ENOSPC, ...) throws IoError naming the folder.
void fsync_directory(const std::filesystem::path& dir);

}  // namespace stretch
