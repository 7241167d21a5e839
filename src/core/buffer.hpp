// An aligned, zero-initialised float (or other trivially copyable) buffer: the storage of every slab.
//
// Buffers of 32 MiB and more are anonymous mappings (mmap), which the kernel hands out zero-filled: their pages
// become resident only when first written, so a slab that is allocated but not yet used (a model's gradients
// while it is imported or evaluated) costs no memory. Below that size, aligned_alloc + memset. (32 MiB is glibc's
// largest mmap threshold: larger allocations were fresh mappings already, faulted in by the memset; now they are
// faulted in by their first use instead.)
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <stdexcept>
#include <utility>

namespace stretch {

template <class T>
class Buffer {
 public:
  static constexpr std::size_t kAlign = 64;
  Buffer() = default;
  explicit Buffer(std::size_t n) { resize(n); }
  Buffer(const Buffer& o) : Buffer(o.n_) { if (n_) std::memcpy(p_, o.p_, n_ * sizeof(T)); }
  Buffer& operator=(const Buffer& o) {
    if (this != &o) { resize(o.n_); if (n_) std::memcpy(p_, o.p_, n_ * sizeof(T)); }
    return *this;
  }
  Buffer(Buffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  ~Buffer() { deallocate(); }

  // Resizes to n elements, all zero (contents are not preserved).
  void resize(std::size_t n) {
    deallocate();
    if (n == 0) return;
    const std::size_t bytes = alloc_bytes(n);
    if (bytes >= kMapBytes) {
      void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      p_ = static_cast<T*>(p);  // page-aligned, zero-filled by the kernel
    } else {
      p_ = static_cast<T*>(std::aligned_alloc(kAlign, bytes));
      if (!p_) throw std::bad_alloc();
      std::memset(static_cast<void*>(p_), 0, bytes);
    }
    n_ = n;
  }
  void zero() { if (n_) std::memset(static_cast<void*>(p_), 0, n_ * sizeof(T)); }
  // Elements [i, i + n) become zero, and where the buffer is a mapping the whole pages inside that range leave
  // memory (madvise MADV_DONTNEED: they are zero-filled again if ever touched). For a slab whose part is kept
  // elsewhere (model/transformer.hpp WeightStorage::bf16). Throws std::out_of_range past the end.
  void release(std::size_t i, std::size_t n) {
    if (i > n_ || n > n_ - i) throw std::out_of_range("Buffer::release past the end");
    if (n == 0) return;
    auto* lo = reinterpret_cast<unsigned char*>(p_ + i);
    auto* hi = reinterpret_cast<unsigned char*>(p_ + i + n);
    if (alloc_bytes(n_) >= kMapBytes) {
      const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
      auto* a = reinterpret_cast<unsigned char*>((reinterpret_cast<std::uintptr_t>(lo) + page - 1) / page * page);
      auto* b = reinterpret_cast<unsigned char*>(reinterpret_cast<std::uintptr_t>(hi) / page * page);
      if (a < b) {
        // private anonymous pages read back as zeros; should the kernel refuse, they are zeroed in place
        if (::madvise(a, static_cast<std::size_t>(b - a), MADV_DONTNEED) != 0)
          std::memset(a, 0, static_cast<std::size_t>(b - a));
        std::memset(lo, 0, static_cast<std::size_t>(a - lo));
        std::memset(b, 0, static_cast<std::size_t>(hi - b));
        return;
      }
    }
    std::memset(lo, 0, static_cast<std::size_t>(hi - lo));
  }

  T* data() { return p_; }
  const T* data() const { return p_; }
  std::size_t size() const { return n_; }
  T& operator[](std::size_t i) { return p_[i]; }
  const T& operator[](std::size_t i) const { return p_[i]; }
  std::span<T> span() { return {p_, n_}; }
  std::span<const T> span() const { return {p_, n_}; }

  static constexpr std::size_t kMapBytes = std::size_t{32} << 20;

 private:
  static std::size_t alloc_bytes(std::size_t n) { return (n * sizeof(T) + kAlign - 1) / kAlign * kAlign; }
  void deallocate() noexcept {
    if (p_) {
      const std::size_t bytes = alloc_bytes(n_);
      if (bytes >= kMapBytes)
        ::munmap(p_, bytes);
      else
        std::free(p_);
    }
    p_ = nullptr;
    n_ = 0;
  }

  T* p_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace stretch
