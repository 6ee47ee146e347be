/** Attacks considered and consciously not defended, printed after the results table. */
export const NOT_DEFENDED: Array<{ attack: string, why: string }> = [
  {
    attack: 'Sybil identities farming upload credit.',
    why: 'Node ids and keys are free: anyone can register many ids and have them report (UPDATE) bytes "received" from each other. ' +
      'Only bounded: at most 64 nodes per source address (MAX_NODES_PER_ADDRESS), a reporter credits at most the file size per content, never itself, ' +
      'and only owners of that content. An attacker with many addresses can still rank itself first in NEED replies. Credit only orders owners; ' +
      'it grants no access, and every piece is verified whoever serves it.'
  },
  {
    attack: 'A flood from more source addresses than the tracker has capacity for (a botnet).',
    why: 'The limit is per source IP (200 requests/s, burst 400); the sum over many addresses is not limited. Each admitted signed request costs an ' +
      'Ed25519 verification, so enough addresses at the per-IP limit saturate the tracker: scenario 2 uses 32 addresses (inside capacity); ' +
      'row 2+ (full budget) measures 240 addresses at the same total rate, which saturates it and multiplies honest latency. ' +
      'There is no global admission control, proof of work or priority for known nodes; that needs deployment-level defences (more trackers, filtering upstream).'
  },
  {
    attack: 'Replay by an on-path attacker within the cookie/connection-id epoch, to the same address.',
    why: 'Connection ids and cookies prove only that the sender receives at an address (about 2 minutes of validity). Someone who can read and inject ' +
      'traffic on the path can reuse them: data REQUESTs carry no signature, so they can make an owner send data to the victim\'s address (bounded by ' +
      'the per-peer read cap and the owner\'s upload limit). Signed tracker requests cannot be replayed to effect: within a node\'s window of its last 16 requests a resent one only gets its cached reply again, and anything older is refused (the highest number is kept across restarts).'
  },
  {
    attack: 'Reading or altering file data in transit; traffic analysis.',
    why: 'There is no encryption or confidentiality: DATA is plaintext and anyone on the path sees which content hash a node fetches and from whom. ' +
      'Integrity is end to end (every piece is checked against the manifest, the manifest against the content hash), so altered data is rejected, ' +
      'but privacy is out of scope.'
  },
  {
    attack: 'A lying or compromised tracker.',
    why: 'Nodes trust the tracker for the name → content-hash mapping and for owner addresses. Pieces are verified against the content hash the tracker gave, ' +
      'so a lying tracker cannot make a node accept bytes that do not match that hash, but it can point a name at other content, withhold owners, ' +
      'or send downloaders to a victim address (bounded: each owner answers only after a HELLO cookie round trip). Names are not signed by publishers.'
  },
  {
    attack: 'Name squatting: announcing other content under a popular name.',
    why: 'Any registered node may OWN any name; a name with several contents is reported as variants and the most-shared one is offered. Whoever has more ' +
      'owners for a name (see Sybil) decides which content a plain name resolves to. There is no publisher key per name.'
  },
  {
    attack: 'Growing the tracker\'s registry with announcements of files that do not exist.',
    why: 'A registered node may OWN any identity without proving it has the bytes (the tracker never sees them). The registry is capped per source address ' +
      '(64 nodes × 10,000 files = 640,000 files), not globally, and the whole database is rewritten on every change (debounced 500 ms); row 2++ (full budget) ' +
      'measures the memory and database size per file. At 200 requests/s one address needs about 53 minutes to reach its cap; many addresses reach more. ' +
      'Honest nodes may share many files, so the caps are generous; a global cap would let one attacker lock everyone else out.'
  },
  {
    attack: 'Hiding in the noise: a flood of refusals that masks the records of a real attack.',
    why: 'Malformed datagrams and refused requests are logged at most 2 per second per process (burst 20), each record carrying how many were suppressed, so ' +
      'a flood cannot fill the disk; the price is that during a flood most individual refusals are only counted (in /metrics and /stats.json), not logged with their source.'
  },
  {
    attack: 'Resource use by a slow or misbehaving owner within its limits.',
    why: 'An owner that answers HELLO and then stalls holds up to 16 pieces of the download for the 5 s idle timeout before they move to other owners, and can ' +
      'come back via a later NEED after a back-off (30 s, doubled at each death) or at once when no other owner is live; a stalling owner is dropped ("dead"), not banned, since it may just be overloaded.'
  }
]
