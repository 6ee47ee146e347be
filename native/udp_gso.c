// Two system calls Node's dgram does not make (and, below, a memory hint and a memcpy), for src/transport/segmented-send.ts and
// src/transport/batch-receive.ts, which fall back to dgram when this is not built or the kernel refuses.
//
// sendSegments: one sendmsg(2) for a run of equal-sized UDP datagrams, with UDP generic segmentation
// offload (UDP_SEGMENT, Linux 4.18+): the kernel walks the socket and IP layers once for the run and
// cuts it into datagrams further down. Node's dgram makes one system call per datagram, and through a
// TUN link that cost an owner about 11 us of CPU for each 1472-byte datagram; one call for 44 of
// them costs about 4 us each.
//
// recvBatch: one recvmmsg(2) into buffers the caller reuses. dgram reads one datagram per call into a
// fresh buffer, which it allocates, zero-fills and copies into, and runs a JavaScript callback (and
// the microtask queue) for each.
#define _GNU_SOURCE
#include <node_api.h>
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

// The caller passes a header and a payload per datagram: 2 x the kernel's 64 (UDP_MAX_SEGMENTS
// before Linux 6.1) datagrams, with room to spare.
#define MAX_PARTS 256

static napi_value errno_result(napi_env env, int err) {
  napi_value v;
  napi_create_int32(env, -err, &v);
  return v;
}

// True when `value` is a Buffer, with its memory in *data and *len.
static bool buffer_arg(napi_env env, napi_value value, void **data, size_t *len) {
  bool is_buffer;
  return napi_is_buffer(env, value, &is_buffer) == napi_ok && is_buffer && napi_get_buffer_info(env, value, data, len) == napi_ok;
}

// sendSegments(fd, parts: Buffer[], segmentBytes, host, port, ipv6Socket) -> 0, or -errno.
// Every datagram but the last must be exactly segmentBytes long (the kernel cuts the run there).
static napi_value send_segments(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6) return errno_result(env, EINVAL);
  int32_t fd, seg, port;
  bool v6socket, is_array;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) return errno_result(env, EBADF);
  if (napi_get_value_int32(env, argv[2], &seg) != napi_ok || seg < 1 || seg > 65507) return errno_result(env, EINVAL);
  if (napi_get_value_int32(env, argv[4], &port) != napi_ok || port < 1 || port > 65535) return errno_result(env, EINVAL);
  if (napi_get_value_bool(env, argv[5], &v6socket) != napi_ok) return errno_result(env, EINVAL);
  char host[INET6_ADDRSTRLEN + 8];
  size_t host_len;
  if (napi_get_value_string_utf8(env, argv[3], host, sizeof host, &host_len) != napi_ok || host_len >= sizeof host - 1) return errno_result(env, EDESTADDRREQ);
  if (napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array) return errno_result(env, EINVAL);
  uint32_t parts;
  if (napi_get_array_length(env, argv[1], &parts) != napi_ok || parts == 0 || parts > MAX_PARTS) return errno_result(env, E2BIG);

  struct iovec iov[MAX_PARTS];
  size_t total = 0;
  for (uint32_t i = 0; i < parts; i++) {
    napi_value part;
    void *data;
    size_t len;
    if (napi_get_element(env, argv[1], i, &part) != napi_ok || !buffer_arg(env, part, &data, &len)) return errno_result(env, EINVAL);
    iov[i].iov_base = data;
    iov[i].iov_len = len;
    total += len;
  }
  if (total == 0 || total > 65507) return errno_result(env, EMSGSIZE);

  struct sockaddr_storage to;
  socklen_t to_len;
  memset(&to, 0, sizeof to);
  struct sockaddr_in *to4 = (struct sockaddr_in *)&to;
  struct sockaddr_in6 *to6 = (struct sockaddr_in6 *)&to;
  struct in_addr a4;
  if (inet_pton(AF_INET, host, &a4) == 1) {
    if (v6socket) {
      // An IPv4 peer of a dual-stack socket: its IPv4-mapped IPv6 address.
      to6->sin6_family = AF_INET6;
      to6->sin6_port = htons((uint16_t)port);
      to6->sin6_addr.s6_addr[10] = 0xff;
      to6->sin6_addr.s6_addr[11] = 0xff;
      memcpy(&to6->sin6_addr.s6_addr[12], &a4, 4);
      to_len = sizeof *to6;
    } else {
      to4->sin_family = AF_INET;
      to4->sin_port = htons((uint16_t)port);
      to4->sin_addr = a4;
      to_len = sizeof *to4;
    }
  } else if (v6socket && inet_pton(AF_INET6, host, &to6->sin6_addr) == 1) {
    to6->sin6_family = AF_INET6;
    to6->sin6_port = htons((uint16_t)port);
    to_len = sizeof *to6;
  } else {
    return errno_result(env, EDESTADDRREQ);
  }

  // A union, so the control buffer is aligned for the cmsghdr placed in it.
  union { char buf[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr align; } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg = {
    .msg_name = &to, .msg_namelen = to_len, .msg_iov = iov, .msg_iovlen = parts,
    .msg_control = control.buf, .msg_controllen = sizeof control.buf
  };
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_UDP;
  cm->cmsg_type = UDP_SEGMENT;
  cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  uint16_t segment = (uint16_t)seg;
  memcpy(CMSG_DATA(cm), &segment, sizeof segment);

  ssize_t sent;
  do sent = sendmsg(fd, &msg, MSG_DONTWAIT); while (sent < 0 && errno == EINTR);
  if (sent < 0) return errno_result(env, errno);
  return errno_result(env, 0);
}


// recvBatch(fd, arena, slotBytes, meta) -> datagrams received (0 when none was waiting), or -errno.
// One recvmmsg(2) that does not block: datagram i lands at arena[i * slotBytes], and meta holds
// META_BYTES per datagram: its length u32 LE (0xffffffff when it did not fit the slot), the sender's
// port u16 LE, the length u8 of its address as text, the family u8 (4 or 6), then that text, as
// Node's rinfo.address writes it: a link-local IPv6 address with its zone (fe80::1%eth0), as libuv
// does, or the peer would go by two names, one for what dgram reads and one for what a batch reads.
#define META_BYTES 72
#define MAX_BATCH 64
static napi_value recv_batch(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4) return errno_result(env, EINVAL);
  int32_t fd, slot;
  void *arena, *meta;
  size_t arena_len, meta_len;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) return errno_result(env, EBADF);
  if (!buffer_arg(env, argv[1], &arena, &arena_len)) return errno_result(env, EINVAL);
  if (napi_get_value_int32(env, argv[2], &slot) != napi_ok || slot < 1) return errno_result(env, EINVAL);
  if (!buffer_arg(env, argv[3], &meta, &meta_len)) return errno_result(env, EINVAL);
  size_t n = arena_len / (size_t)slot;
  if (meta_len / META_BYTES < n) n = meta_len / META_BYTES;
  if (n > MAX_BATCH) n = MAX_BATCH;
  if (n == 0) return errno_result(env, EINVAL);

  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  struct sockaddr_storage from[MAX_BATCH];
  memset(msgs, 0, sizeof msgs[0] * n);
  for (size_t i = 0; i < n; i++) {
    iov[i].iov_base = (char *)arena + i * (size_t)slot;
    iov[i].iov_len = (size_t)slot;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &from[i];
    msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    from[i].ss_family = AF_UNSPEC;
  }
  int got;
  do got = recvmmsg(fd, msgs, (unsigned)n, MSG_DONTWAIT, NULL); while (got < 0 && errno == EINTR);
  if (got < 0) return errno_result(env, (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : errno);
  for (int i = 0; i < got; i++) {
    uint8_t *m = (uint8_t *)meta + (size_t)i * META_BYTES;
    uint32_t len = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? 0xffffffffu : msgs[i].msg_len;
    char *text = (char *)m + 8;
    const size_t room = META_BYTES - 8;
    uint16_t port = 0;
    memcpy(m, &len, 4);
    m[7] = 0;
    text[0] = 0;
    if (msgs[i].msg_hdr.msg_namelen < sizeof(sa_family_t)) {
      // No sender address: left unnamed, and dropped by the caller.
    } else if (from[i].ss_family == AF_INET) {
      struct sockaddr_in *a = (struct sockaddr_in *)&from[i];
      port = ntohs(a->sin_port);
      m[7] = 4;
      if (inet_ntop(AF_INET, &a->sin_addr, text, room) == NULL) text[0] = 0;
    } else if (from[i].ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&from[i];
      port = ntohs(a->sin6_port);
      m[7] = 6;
      if (inet_ntop(AF_INET6, &a->sin6_addr, text, room) == NULL) {
        text[0] = 0;
      } else if (IN6_IS_ADDR_LINKLOCAL(&a->sin6_addr) && a->sin6_scope_id != 0) {
        size_t at = strnlen(text, room);
        char name[IF_NAMESIZE];
        int n = if_indextoname(a->sin6_scope_id, name) != NULL
          ? snprintf(text + at, room - at, "%%%s", name)
          : snprintf(text + at, room - at, "%%%u", (unsigned)a->sin6_scope_id);
        if (n < 0 || (size_t)n >= room - at) text[0] = 0; // no room: dropped, not misnamed
      }
    }
    memcpy(m + 4, &port, 2);
    m[6] = (uint8_t)strnlen(text, room);
  }
  return errno_result(env, -got);
}

// adviseHugePages(buffer) -> 0, or -errno. Asks for transparent huge pages (MADV_HUGEPAGE) over the
// 2 MiB-aligned part of a large buffer's memory: where THP is set to madvise, as on this project's
// VM, first-touched 4 KiB pages cost a fault each: touching a 24 MB piece-buffer slab took 66-90 ms,
// and in huge pages 3-57 ms.
#define HUGE_PAGE_BYTES ((uintptr_t)2 << 20)
static napi_value advise_huge_pages(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data;
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1) return errno_result(env, EINVAL);
  if (!buffer_arg(env, argv[0], &data, &len)) return errno_result(env, EINVAL);
  uintptr_t start = ((uintptr_t)data + HUGE_PAGE_BYTES - 1) & ~(HUGE_PAGE_BYTES - 1);
  uintptr_t end = ((uintptr_t)data + len) & ~(HUGE_PAGE_BYTES - 1);
  if (end <= start) return errno_result(env, 0);
  if (madvise((void *)start, end - start, MADV_HUGEPAGE) != 0) return errno_result(env, errno);
  return errno_result(env, 0);
}

// copyBytes(target, targetStart, source, sourceStart, sourceEnd): memcpy between two Buffers, the bytes
// copied or a negative errno. Buffer.copy is a TypedArray.set, which V8 does element by element when
// the target is shared memory (src/node/buffer-pool.ts's slab): 5x slower in datagram-sized pieces.
static napi_value copy_bytes(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  void *target, *source;
  size_t target_len, source_len;
  int64_t target_start, source_start, source_end;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5) return errno_result(env, EINVAL);
  if (!buffer_arg(env, argv[0], &target, &target_len) || !buffer_arg(env, argv[2], &source, &source_len)) return errno_result(env, EINVAL);
  if (napi_get_value_int64(env, argv[1], &target_start) != napi_ok || napi_get_value_int64(env, argv[3], &source_start) != napi_ok ||
      napi_get_value_int64(env, argv[4], &source_end) != napi_ok) return errno_result(env, EINVAL);
  if (source_start < 0 || source_end < source_start || (uint64_t)source_end > source_len || target_start < 0 ||
      (uint64_t)target_start + (uint64_t)(source_end - source_start) > target_len) return errno_result(env, ERANGE);
  size_t n = (size_t)(source_end - source_start);
  memmove((char *)target + target_start, (char *)source + source_start, n);
  napi_value copied;
  napi_create_int64(env, (int64_t)n, &copied);
  return copied;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "sendSegments", NAPI_AUTO_LENGTH, send_segments, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "sendSegments", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "recvBatch", NAPI_AUTO_LENGTH, recv_batch, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "recvBatch", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "adviseHugePages", NAPI_AUTO_LENGTH, advise_huge_pages, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "adviseHugePages", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "copyBytes", NAPI_AUTO_LENGTH, copy_bytes, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "copyBytes", fn) != napi_ok) return NULL;
  return exports;
}
