/**
 * Every default udptorrent uses. Flags and environment variables override these (see src/cli.ts);
 * no other module hard-codes a port, interval, size or limit.
 */

// ---- where things live -------------------------------------------------------------------------
/** Environment variable that names the folder holding node_files/, tracker_db/ and logs/. */
export const HOME_ENV_VAR = 'UDPTORRENT_HOME'
export const NODE_FILES_DIR = 'node_files'
export const TRACKER_DB_DIR = 'tracker_db'
export const LOGS_DIR = 'logs'
export const TRACKER_DB_FILE = 'tracker.json'
/** Per-node hidden folder (inside node_files/nodeN/) for resume state; never served. */
export const NODE_STATE_DIR = '.udptorrent'
export const PART_SUFFIX = '.part'

// ---- network -----------------------------------------------------------------------------------
export const DEFAULT_TRACKER_HOST = '127.0.0.1'
export const DEFAULT_TRACKER_PORT = 6969
/** 0 = ephemeral: the tracker records whatever source address it sees. */
export const DEFAULT_NODE_PORT = 0
export const DEFAULT_BIND_HOST = '0.0.0.0'
/**
 * Explicit socket buffers: the kernel default (208 KB) holds only ~170 datagrams of 1200 bytes,
 * so a burst from several owners overflows it. The kernel clamps to net.core.rmem_max.
 */
export const DEFAULT_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024

// ---- liveness ----------------------------------------------------------------------------------
export const DEFAULT_HEARTBEAT_SECONDS = 10
/** A node silent for this many heartbeat intervals is forgotten, with its ownerships. */
export const PRUNE_AFTER_HEARTBEATS = 2.5
/** How often the tracker looks for silent nodes, as a fraction of the heartbeat interval. */
export const PRUNE_SWEEP_FRACTION = 0.25

// ---- tracker -----------------------------------------------------------------------------------
/** K: the most owners one NEED reply carries. */
export const DEFAULT_MAX_OWNERS_RETURNED = 32
/** State is written at most this often (debounced) and always at shutdown. */
export const TRACKER_DB_FLUSH_MS = 500
/** Tracker request/response: first retry after this long, doubling, for at most this long. */
export const TRACKER_REQUEST_INITIAL_TIMEOUT_MS = 250
export const TRACKER_REQUEST_MAX_TIMEOUT_MS = 2_000
export const TRACKER_REQUEST_TOTAL_TIMEOUT_MS = 8_000

// ---- wire limits (every field is bounded) ------------------------------------------------------
export const MAX_FILE_NAME_BYTES = 255
export const MAX_FILE_SIZE_BYTES = 2 ** 46 // 64 TiB: fits a u64 field and a JS safe integer
export const MIN_PIECE_SIZE = 16 * 1024
export const MAX_PIECE_SIZE = 16 * 1024 * 1024
export const MAX_PIECES = 2 ** 22
export const MAX_UPDATE_ENTRIES = 64
export const MAX_ERROR_TEXT_BYTES = 200
/** Largest datagram we ever build or accept (IPv4 UDP payload limit). */
export const MAX_DATAGRAM_BYTES = 65_507

// ---- content -----------------------------------------------------------------------------------
export const DEFAULT_PIECE_SIZE = 256 * 1024
export const HASH_BYTES = 32 // SHA-256
/**
 * Pieces at least this large are hashed on a worker thread (see HashWorker), off the main thread
 * that receives. Below this the copy and the two messages cost more than the hash.
 */
export const OFF_THREAD_HASH_MIN_BYTES = 64 * 1024
/** Buffers lent to the hash worker that are kept for reuse, in bytes: a few default pieces. */
export const HASH_WORKER_SPARE_BYTES = 8 * 1024 * 1024
/**
 * Shared memories (a download's piece-buffer slab, 24 MB) the hash worker keeps a hold on, the most
 * recently used: each one it holds stays allocated after its download has ended.
 */
export const HASH_WORKER_SHARED_MEMORIES = 4

// ---- transport ---------------------------------------------------------------------------------
/** Safe on any path (RFC 9000 / RFC 8899 base PLPMTU). */
export const DEFAULT_DATAGRAM_BYTES = 1200
/**
 * An owner sends each answer's equal-sized datagrams in runs, one sendmsg with UDP_SEGMENT (GSO)
 * per run, where native/udp_gso.c is built and the kernel allows it (`--no-udp-gso` turns it off).
 * Through the netlab TUN link one dgram send cost the owner about 11 us of CPU per 1472-byte
 * datagram; a run of 44 cost about 4 us a datagram.
 */
export const UDP_SEGMENTATION = true
/** Datagrams in one run: the kernel's UDP_MAX_SEGMENTS before Linux 6.1 (64 KB of payload bounds it too). */
export const MAX_SEGMENTS_PER_SEND = 64
/**
 * Runs are the fast path only up to this many datagrams at once, refilled at this many per
 * millisecond; past that, datagrams go one system call each, which is slow enough to pace them.
 * A run reaches the wire at memory speed, and answers the owner sends back to back (a stall on a
 * shared core lets requests pile up) then outran netlab's TUN ring of 500 packets: the lab's
 * sender-side drops went from about 90 to about 1500 in a 100 MB transfer, and retransmissions
 * on its loss-free link from 1.04x to 1.09x. 128 a millisecond is 188 MB/s at 1472 bytes.
 */
export const SEGMENTED_BURST_DATAGRAMS = 128
export const SEGMENTED_DATAGRAMS_PER_MS = 128
/**
 * Datagrams waiting on a node's socket are read in batches, one recvmmsg into reused buffers per
 * batch, where native/udp_gso.c is built (`--no-recv-batch` turns it off). dgram reads one per call
 * into a fresh, zero-filled buffer and runs a callback and the microtask queue for each: through
 * the netlab link the downloader spent 13 % less CPU per byte with batches (1.79 against 2.06
 * CPU-% per MB/s over 9 runs), and on loopback a fifth of its main thread had gone to page faults
 * and zero-filling those buffers.
 */
export const RECEIVE_BATCH = true
/** Datagrams one batch reads at most; each has a buffer of MAX_DATAGRAM_BYTES, reused. */
export const RECEIVE_BATCH_DATAGRAMS = 32
/**
 * Batches a link's timer reads off the socket before it declares anything lost or timed out
 * (Endpoint.readWaiting): 128 × 32 datagrams, about what a full 4 MB socket buffer holds of 1472 B
 * ones (the kernel doubles the size asked for and counts about 2.3 KB for each).
 */
export const READ_WAITING_MAX_BATCHES = 128
/** Requests a link remembers as refused (Choked) until the owner's UNCHOKE names one of them. */
export const MAX_CHOKED_TXIDS = 64
/** One REQUEST asks for at most this many data datagrams. */
export const MAX_DATAGRAMS_PER_REQUEST = 64
/** Initial congestion window, in datagrams (RFC 9002 uses 10 packets). */
export const INITIAL_CWND_DATAGRAMS = 16
export const MIN_CWND_DATAGRAMS = 4
export const MAX_CWND_DATAGRAMS = 8192
/** RFC 6298 constants. The 1 s floor of RFC 6298 is far above loopback/LAN RTTs; RFC 6298 §2.4 permits a lower one. */
export const INITIAL_RTO_MS = 500
/** Before a path has an RTT, a lost HELLO is sent again after this long, doubling up to the RTO. */
export const HELLO_FIRST_RETRY_MS = 100
/** The first HELLO to a path with no RTT is sent once more when no answer came within this long (see PeerLink.copyDue). */
export const HELLO_COPY_AFTER_MS = 10
/** HELLO attempts whose answer is still accepted (each has its own txid). */
export const MAX_HELLOS_OUTSTANDING = 4
export const MIN_RTO_MS = 20
export const MAX_RTO_MS = 4_000
/** RFC 9002 §6.1: a datagram is lost when 3 later ones of the same response arrived... */
export const LOSS_REORDER_THRESHOLD = 3
/** ...or when data of a later request arrived and nothing more of its own for this fraction of the RTT (RFC 9002's 9/8 RTT since sent)... */
export const LOSS_REORDER_WINDOW_RTT = 1 / 8
/** ...but at least this long (RFC 9002 kGranularity). */
export const LOSS_TIME_GRANULARITY_MS = 1
/** A peer that sent nothing for this long while we waited on it is declared dead. */
export const PEER_IDLE_TIMEOUT_MS = 5_000
/**
 * A dropped-as-dead owner the tracker still lists is taken back only after this long, doubled each
 * time it dies again (at once if no other owner is left): a stalled owner may just be overloaded,
 * but a slowloris must not get its pieces back every time we ask the tracker.
 */
export const DEAD_OWNER_RETRY_MS = 30_000
/** An owner that fails this many pieces (timeouts or bad hashes) is dropped for the download. */
export const MAX_OWNER_FAILURES = 3
/** How long a download with no usable owner keeps asking the tracker before it fails. */
export const DOWNLOAD_NO_OWNER_TIMEOUT_MS = 20_000
/** Verified pieces held in memory per owner while their blocks arrive (bounds memory). */
export const PIECES_IN_FLIGHT_PER_OWNER = 48
export const PIECES_IN_FLIGHT_PER_PARTIAL_OWNER = 4
/**
 * Adjacent pieces a download asks a complete owner for in one fetch, in bytes (S/N shares only).
 * Piece by piece, a 256 KiB piece is four full 65000 B datagrams and a 2 KB tail, and one request
 * of its own: a 256 MB loopback download sent 1007 requests and 4921 datagrams, a fifth of them
 * tails, and the receiving thread's cost is per datagram and per request, not per byte.
 */
export const MAX_RUN_BYTES = 1024 * 1024
/**
 * Received pieces a download holds while they wait for their hash and the disk, in bytes. Beyond
 * this, a worker with a run received waits before fetching the next: the disk is the bottleneck then.
 * With PIECES_IN_FLIGHT_PER_OWNER pieces in flight it must fit PIECE_BUFFER_POOL_BYTES, whose
 * buffers are the page-aligned ones written with O_DIRECT.
 */
export const FINISHING_PIECE_BYTES = 8 * 1024 * 1024
/** Idle download workers look again at least this often (besides every change that wakes them). */
export const DOWNLOAD_IDLE_TICK_MS = 250
/** Persist the verified-pieces bitfield at most this often during a download. */
export const RESUME_STATE_FLUSH_MS = 250
/**
 * A download starts an fdatasync in the background each time this many bytes have been written
 * since the last one began. The file must be durable before it is renamed to its final name, and
 * left to the end that flush is all of it at once: 0.37 s of a 1.47 s 256 MB loopback download on
 * this VM (the host writes back the disk image). Started along the way, it overlaps the transfer.
 */
export const BACKGROUND_SYNC_BYTES = 32 * 1024 * 1024

// ---- serving -----------------------------------------------------------------------------------
/** Open file handles a node keeps for serving. */
export const MAX_OPEN_SERVE_HANDLES = 64

// ---- console -----------------------------------------------------------------------------------
export const PROGRESS_INTERVAL_TTY_MS = 200
export const PROGRESS_INTERVAL_PLAIN_MS = 2_000
/** Malformed datagrams and refused requests are counted always, but logged at most this fast (records/s, burst). */
export const HOSTILE_LOG_PER_SECOND = 2
export const HOSTILE_LOG_BURST = 20

// ---- congestion control (delay-based; see src/transport/congestion.ts) --------------------------
/** 'ledbat' tells random loss from congestion by queueing delay; 'newreno' treats every loss as congestion. */
export const DEFAULT_CONGESTION_CONTROL: 'ledbat' | 'newreno' = 'ledbat'
/** Queueing delay the controller aims for: at least this... */
export const LEDBAT_MIN_TARGET_MS = 5
/** ...or this fraction of the base RTT, whichever is larger (long paths tolerate more queue). */
export const LEDBAT_TARGET_RTT_FRACTION = 0.5
/** Window gain per round trip at zero queueing delay, in datagrams (RFC 6817 GAIN = 1)... */
export const LEDBAT_GAIN = 1
/** ...or this fraction of the window, whichever is larger: +1 per RTT would take minutes to fill a fast path. */
export const LEDBAT_PROPORTIONAL_GAIN = 1 / 8
/**
 * A loss with queueing delay above this multiple of the target is congestion; below, random loss.
 * Above the target itself the window already shrinks with the delay; at 5 % loss nearly every
 * round has a loss, so a threshold at the target cut the window by LEDBAT_LOSS_BETA at every
 * passing scheduling hiccup.
 */
export const LEDBAT_LOSS_DELAY_FRACTION = 2
/** Multiplicative decrease on a congestion loss. */
export const LEDBAT_LOSS_BETA = 0.7
/** The base (propagation) RTT is the minimum over this long, so a route change is eventually seen. */
export const LEDBAT_BASE_HISTORY_MS = 10_000
/** Bottleneck bandwidth is the maximum delivery rate over this many rounds (BBR uses 10)... */
export const BTLBW_FILTER_ROUNDS = 10
/** ...and the pipe is full when it grew by less than this factor over FULL_PIPE_ROUNDS rounds (BBR: 1.25, 3). */
export const FULL_PIPE_GROWTH = 1.25
export const FULL_PIPE_ROUNDS = 3
/** A delivery-rate round lasts the RTT, but at least this long: on loopback one RTT holds a few event-loop turns. */
export const DELIVERY_ROUND_MIN_MS = 1
/**
 * With a full pipe the window is capped at this multiple of bottleneck rate × base RTT (BBR's cwnd
 * gain). The headroom is what lets the estimate grow, by up to this factor a round trip: at 1.25 a
 * low estimate from a CPU stall held a lossy netlab link at a third of its rate for seconds.
 * The delay target, not this cap, is what keeps the queue short on a path whose delay shows.
 */
export const BDP_CWND_GAIN = 2
/** The cap never goes below this (two full requests each way): loopback's RTT is mostly our own event loop. */
export const BDP_CWND_FLOOR_DATAGRAMS = 2 * MAX_DATAGRAMS_PER_REQUEST

// ---- datagram size probing (RFC 8899 style) ----------------------------------------------------
/** A DATA datagram's header: udptorrent's 8 bytes, then stream u8 and offset u64 (src/messages checks it). */
export const DATA_DATAGRAM_HEADER_BYTES = 17
/**
 * Sizes tried above the 1200-byte base, smallest first; each must arrive before the next is tried.
 * Above Ethernet's 1472, each carries a power-of-two payload, so a power-of-two piece splits into
 * whole datagrams: a 16 KiB piece in 16384-byte datagrams took two, one of them 17 bytes long.
 */
export const DATAGRAM_PROBE_LADDER = [1472, ...[4096, 8192, 16384, 32768].map((payload) => payload + DATA_DATAGRAM_HEADER_BYTES), 65000]
/**
 * Datagrams delivered at the current size before probing the larger ones. One proves the path
 * works at this size, which is all RFC 8899 asks. At 32, a 256 MB loopback download fetched its
 * manifest and whole first piece in 1200-byte datagrams before the first probe left; side by side
 * 303-367 MB/s at 32 against 371-394 MB/s at 1.
 */
export const PROBE_AFTER_DATAGRAMS = 1
/** Timeouts in a row at a probed size before falling back to the base size (one can be CPU starvation). */
export const BLACK_HOLE_TIMEOUTS = 2
/** RFC 8899 MAX_PROBES: a size that fails this many probes is above the path's limit. */
export const MAX_PROBES = 3
/** Node cannot set DF, so IPv4 datagrams above the interface MTU are fragmented and lose more: off-link paths are capped at Ethernet's 1500 minus IP+UDP headers. */
export const DEFAULT_OFF_LINK_MAX_DATAGRAM_BYTES = 1472

// ---- pacing and rate limits --------------------------------------------------------------------
/** Requests are paced at this multiple of cwnd/srtt (RFC 9002 §7.7 suggests 1.25). */
export const PACING_GAIN = 1.25
/** Pacing lets this much time's worth of sending go at once: timers have ~1 ms granularity. */
export const PACING_BURST_MS = 2
/** A rate limiter holds at most this much time's worth of queued sending before refusing more. */
export const RATE_LIMIT_MAX_QUEUE_MS = 1_000

// ---- process -----------------------------------------------------------------------------------
/** V8 young-generation cap (MB): see src/cli.ts for why a small one keeps memory flat. */
export const V8_MAX_SEMI_SPACE_MB = 1

// ---- security (issue 5) ------------------------------------------------------------------------
/** Connection ids and data cookies are HMACs over (epoch, address); an epoch lasts this long... */
export const AUTH_EPOCH_MS = 60_000
/** ...and ids from this many past epochs are still accepted (so an id lives about 2 minutes). */
export const AUTH_EPOCHS_ACCEPTED = 2
export const CONNECTION_ID_BYTES = 8
export const COOKIE_BYTES = 8
export const PUBLIC_KEY_BYTES = 32
export const SIGNATURE_BYTES = 64
/** Where the tracker keeps its HMAC secret, inside tracker_db/. */
export const TRACKER_SECRET_FILE = 'secret.key'
/** Where a node keeps its Ed25519 key, inside node_files/nodeN/.udptorrent/. */
export const NODE_KEY_FILE = 'identity.pem'
/** Resource caps: past any of them the request is refused and counted, never a crash. */
export const MAX_NODES_PER_ADDRESS = 64
/**
 * How many of a node's most recent signed requests the tracker remembers, with their replies. A
 * node's heartbeat, OWN and NEED run concurrently, so a request can arrive after a later one or
 * be retransmitted after it; within this window it is still accepted once and answered again.
 */
export const SEQ_REPLAY_WINDOW = 16
/**
 * A node numbers its requests with a microsecond clock; one more than this below its newest is too
 * old to be a request still being retried (a transaction gives up within seconds), so a replay.
 */
export const SEQ_REORDER_SPAN = 60_000_000
export const MAX_FILES_PER_NODE = 10_000
/** Tracker requests per second per source IP (token bucket), and the burst allowed. */
export const TRACKER_REQUESTS_PER_SECOND_PER_IP = 200
export const TRACKER_REQUEST_BURST_PER_IP = 400
/** Addresses whose rate state is remembered (LRU): bounds the memory a flood of sources can take. */
export const MAX_TRACKED_ADDRESSES = 65_536
/**
 * Data requests a node serves at once for one peer, and for all peers. A downloader keeps about
 * PIECES_IN_FLIGHT_PER_OWNER requests open to an owner, and what exceeds the cap is dropped (and
 * looks like loss to it), so the per-peer cap sits above that.
 */
export const MAX_SERVE_READS_PER_PEER = 64
export const MAX_SERVE_READS_IN_FLIGHT = 128
/** Bytes of answers a node holds in memory at once (read, not yet sent), for all peers. */
export const MAX_SERVE_BYTES_IN_FLIGHT = 64 * 1024 * 1024
/** Bytes a node holds in piece buffers for all its downloads together. */
export const MAX_RECEIVE_BUFFER_BYTES = 64 * 1024 * 1024
/** Free piece buffers a download keeps for its next pieces (see src/node/buffer-pool.ts). */
export const PIECE_BUFFER_POOL_BYTES = 24 * 1024 * 1024
/**
 * Downloads write their pieces with O_DIRECT where the file system allows it (`--no-direct-io`
 * turns it off). Buffered writes copy every byte into freshly allocated page cache, and on this
 * VM first-touched memory costs a host fault per page: a 256 MB loopback download spent 0.44 s
 * of pool-thread CPU in that copy and wrote at about 270 MB/s, against 1.3 GB/s direct.
 */
export const DIRECT_IO_WRITES = true
/** Address, offset and length alignment for O_DIRECT: the page size, which covers 512 B and 4 KiB sector disks. */
export const DIRECT_IO_ALIGN_BYTES = 4096
/** A shared file's size, mtime and inode are re-checked at most this often while serving it. */
export const SHARED_FILE_RECHECK_MS = 1_000

// ---- swarming -------------------------------------------------------------------------------------
/** Peers a node uploads to at once (BitTorrent's unchoke slots), the optimistic one included. */
export const UPLOAD_SLOTS = 4
export const MAX_UPLOAD_SLOTS = 64
/** How often the choker re-decides who is served (BitTorrent uses 10 s; our downloads are short). */
export const CHOKE_INTERVAL_MS = 2_000
/** A peer that has requested nothing for this long loses its interest, and its slot. Above CHOKED_RETRY_MS: a choked peer stays interested. */
export const CHOKE_INTEREST_TIMEOUT_MS = 2_500
/** An unchoked peer that has asked for nothing this long loses its slot to a peer that asks. */
export const CHOKE_IDLE_SLOT_MS = 500
/** The optimistic slot rotates every this many choke rounds. */
export const OPTIMISTIC_UNCHOKE_ROUNDS = 3
/** How often a downloader polls a partial owner's bitfield (the HAVE messages of BitTorrent). */
export const BITFIELD_POLL_MS = 1_000
/**
 * ...and a partial owner that chokes us, this often: it cannot serve us whatever it has, but its
 * bits must stay fresh enough for us to keep asking it for a slot. In a swarm most owners choke
 * us, and at N = 32 polling them all every second was 60k of the simulator's 200k datagrams.
 */
export const CHOKED_BITFIELD_POLL_MS = 4_000
/** How often a running download asks the tracker for owners that joined since. */
export const OWNER_REFRESH_MS = 1_000
/**
 * A choked downloader asks that owner again after this long, unless the owner's UNCHOKE comes
 * first (that is how it learns of a slot; the retry covers a lost UNCHOKE and keeps it interested).
 * At N = 32 in the simulator, asking every 250 ms made 75k of the swarm's 270k datagrams refusals.
 */
export const CHOKED_RETRY_MS = 1_000
/** The first pieces are picked at random, not rarest first, so a newcomer soon has something to trade. */
export const RANDOM_FIRST_PIECES = 4
/** How often a node started with --exit-after-upload checks what it has uploaded. */
export const EXIT_AFTER_UPLOAD_CHECK_MS = 50

// ---- swarm simulator (udptorrent simulate) ----------------------------------------------------------
// Defaults sized for a 2-core machine running 34 Node processes: at N = 32 the swarm's total upload
// is 0.625 + 32 × 0.125 = 4.6 MB/s. Each rate-limited node costs its share of a core for as long as it
// transfers (datagram handling, timers, disk, GC), and at twice these rates N = 32 kept both cores
// busy from start to end (1.27-1.30× the bound; 1.16× at these). See the README to scale up.
export const SIM_DEFAULT_FILE_BYTES = 8 * 1024 * 1024
export const SIM_DEFAULT_PIECE_BYTES = 16 * 1024
export const SIM_DEFAULT_PEER_UPLOAD = 125_000
/** u_s = 5u, as in the flash-crowd target. */
export const SIM_DEFAULT_SEED_UPLOAD = 625_000
export const SIM_DEFAULT_PEER_COUNTS = [1, 2, 4, 8, 16, 32]
export const SIM_SEED_LEAVES_PEERS = 16
export const SIM_MAX_PEERS = 128
export const SIM_FILE_NAME = 'swarm.bin'
export const SIM_HEARTBEAT_SECONDS = 2
export const SIM_OWNER_TIMEOUT_SECONDS = 30
/** A peer not done by this many times the bound (plus the slack) is recorded as unfinished. */
export const SIM_TIMEOUT_FACTOR = 4
export const SIM_TIMEOUT_SLACK_MS = 30_000
export const SIM_REPORTS_DIR = 'reports'
