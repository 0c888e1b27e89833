"""The Lua scripts of the Redis store: every change to an entry together with its index.

Each script runs atomically on the server, so the entry, its chunks, the ``lru`` and
``sizes`` indexes, the ``total``, the function's ``entries`` set and its sweep note never
disagree, whichever clients write at once. See ``_redisstore`` for the key layout.
"""

from __future__ import annotations

# The same rule as _ledger.choose_victims, run on the server so that the index and the total
# change atomically with the eviction (two clients never evict and count at once).
from ._ledger import EVICT_TO

EVICT_LIMIT = 1000  # entries one script call evicts at most (bounds how long it blocks)

# KEYS[1..3] are always lru, sizes, total. A script's first write is the one Redis may
# refuse when out of memory (later writes of the same script run), so each script does its
# memory-hungry write first and leaves the index consistent whichever way it ends.

COMMON = """
local lru, sizes, total = KEYS[1], KEYS[2], KEYS[3]
-- <prefix>expiring: the entries written with an expiry, by when (ms, the writer's clock)
local expiring = string.sub(lru, 1, -4) .. 'expiring'
local function chunks_of(entry)
  local head = redis.pcall('GETRANGE', entry, 0, 31)
  if type(head) ~= 'string' then return nil end
  local gen = string.match(head, '^MJCH %d (%x+) ')
  if gen then return entry .. ':c:' .. gen end
  return nil
end
local function size_of(entry)
  return tonumber(redis.call('HGET', sizes, entry) or 0) or 0
end
-- <prefix><function>: of an entry <prefix><function>:<32 hex digits>
local function base_of(entry)
  return string.sub(entry, 1, -33)
end
local function drop(entry)
  local chunks = chunks_of(entry)
  if chunks then redis.call('UNLINK', chunks) end
  local existed = redis.call('UNLINK', entry)
  local size = size_of(entry)
  redis.call('HDEL', sizes, entry)
  redis.call('ZREM', lru, entry)
  redis.call('ZREM', expiring, entry)
  local base = base_of(entry)
  redis.call('SREM', base .. 'entries', entry)
  if redis.call('EXISTS', base .. 'entries') == 0 then redis.call('DEL', base .. 'swept') end
  if redis.call('EXISTS', sizes) == 0 then
    redis.call('DEL', total)
  elseif size ~= 0 then
    redis.call('DECRBY', total, size)
  end
  return existed, size
end
-- Evict least-recently-used entries (never `keep`) until `incoming` more bytes fit
-- max_size, down to the EVICT_TO fraction. `used` excludes `keep`'s own size. Entries
-- Redis expired go from the index first (``expiring``, due by `now`, in seconds): before,
-- they still counted, and live entries used before them were evicted in their place.
local function make_room(max_size, incoming, keep, kept, used, now)
  local removed, steps = 0, 0
  if redis.call('EXISTS', sizes) == 0 then
    -- No sizes (none written yet, or evicted by an allkeys-* policy, which takes it
    -- first): the entries it listed are seen by no max_size until prune puts them back.
    -- Before, the total still counted them and each was dropped as of size 0: one write
    -- evicted every entry the lru listed.
    redis.call('DEL', total, lru)
    return 0
  end
  if used + incoming <= max_size then return 0 end
  local due = redis.call('ZRANGEBYSCORE', expiring, '-inf', math.floor(now * 1000),
                         'LIMIT', 0, EVICT_LIMIT)
  for _, entry in ipairs(due) do
    if entry ~= keep and redis.call('EXISTS', entry) == 0 then
      local _, size = drop(entry)
      used = used - size
    end
  end
  local target = math.max(math.floor(max_size * EVICT_TO) - incoming, 0)
  while used > target and steps < EVICT_LIMIT do
    local oldest = redis.call('ZRANGE', lru, 0, 1)
    local victim = oldest[1]
    if victim == keep then victim = oldest[2] end
    if not victim then  -- nothing left to evict: the total had drifted; now it is known
      redis.pcall('SET', total, kept)  -- (refused when out of memory: then drifted still)
      break
    end
    local existed, size = drop(victim)
    used = used - size
    removed = removed + existed
    steps = steps + 1
  end
  return removed
end
""".replace("EVICT_TO", repr(EVICT_TO)).replace("EVICT_LIMIT", str(EVICT_LIMIT))

# What a write is known by: "+" and its first 32 bytes (an entry's lead, magic, checksum
# and creation time; a chunk pointer's generation), "+" alone for no entry.
SEEN = """
local function seen(entry)
  local head = redis.pcall('GETRANGE', entry, 0, 31)
  if type(head) ~= 'string' then head = '' end
  return '+' .. head
end
"""

# KEYS[4] entry, KEYS[5] its lock; ARGV value, px (0: none), chunks key ('' : none), size,
# now, max_size (0), the lock's token ('': written without the lock), the number of chunks,
# the entry as the lock's holder found it (ACQUIRE's) -> entries evicted, or (nothing
# written) -1 when the lock is another's, -2 when it is gone (expired, or removed by the
# server: evicted, flushed, lost in a restart) and the entry changed since it was taken.
# A lock gone with the entry as its holder found it is one nobody used: its holder held the
# GIL past the lease (a long pickle, a C call such as json.loads of a large file, so no
# thread renewed it), or the server evicted it. Before, that write was refused too: such a
# function's results were never stored, at every call.
COMMIT = COMMON + SEEN + """
local entry, lock = KEYS[4], KEYS[5]
local value, px, chunks = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local size, now, max_size = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
if ARGV[7] ~= '' then
  local held = redis.call('GET', lock)
  if held and held ~= ARGV[7] then return -1 end
  if not held then
    local now_seen = seen(entry)
    -- (or this very write, run before: a retry whose first run's reply was lost)
    if now_seen ~= ARGV[9] and now_seen ~= '+' .. string.sub(value, 1, 32) then return -2 end
  end
end
-- every chunk there: a set removed meanwhile (expired, or reaped as an orphan while its
-- writer stalled) is made again by the writer's later chunks, without its first ones
if chunks ~= '' and redis.call('HLEN', chunks) ~= tonumber(ARGV[8]) then
  return redis.error_reply('the chunks of this write were gone before they were committed: '
    .. 'evicted by the server (a maxmemory-policy: it is full), expired, or removed as orphans')
end
local before = size_of(entry)
local evicted = 0
if max_size > 0 then
  local used = (tonumber(redis.call('GET', total) or 0) or 0) - before
  evicted = make_room(max_size, size, entry, before, used, tonumber(now))
end
local old = chunks_of(entry)
if px > 0 then
  redis.call('SET', entry, value, 'PX', px)
else
  redis.call('SET', entry, value)
end
if old and old ~= chunks then redis.call('UNLINK', old) end
if chunks ~= '' then
  if px > 0 then redis.call('PEXPIRE', chunks, px) else redis.call('PERSIST', chunks) end
end
redis.call('HSET', sizes, entry, size)
redis.call('INCRBY', total, size - before)
redis.call('ZADD', lru, now, entry)
if px > 0 then
  redis.call('ZADD', expiring, math.floor(tonumber(now) * 1000) + px, entry)
else
  redis.call('ZREM', expiring, entry)
end
redis.call('SADD', base_of(entry) .. 'entries', entry)
-- entries Redis expired leave index members: drop one stale member per write
local oldest = redis.call('ZRANGE', lru, 0, 0)[1]
if oldest and oldest ~= entry and redis.call('EXISTS', oldest) == 0 then drop(oldest) end
return evicted
"""

# KEYS[4] this call's marker (<prefix>deleted:<nonce>), KEYS[5..] entries; ARGV[1] the
# marker's PX -> one character an entry, '1' if it existed. The answer is kept in the marker:
# redis-py sends a script again after a dropped connection (the store's ``retry``), also one
# the server ran before the drop, and that second run, finding the entries gone, would say
# none existed; it answers what the first run removed instead. The marker is set last, and
# by pcall: out of memory, the entries are removed all the same (the answer then not kept).
DELETE = COMMON + """
local done = redis.call('GET', KEYS[4])
if done then return done end
local existed = {}
for i = 5, #KEYS do existed[#existed + 1] = tostring(drop(KEYS[i])) end
local answer = table.concat(existed)
redis.pcall('SET', KEYS[4], answer, 'PX', ARGV[1])
return answer
"""

# KEYS[4] entry; ARGV[1] the first bytes of the entry judged bad (its header: written with
# its creation time and checksum, so no later write's is the same) -> 1 if it was removed.
# A chunked entry's pointer line is followed by the entry's first bytes (RedisStore._write).
DISCARD = COMMON + """
local judged = ARGV[1]
local got = redis.call('GETRANGE', KEYS[4], 0, #judged + 511)
if string.sub(got, 1, 5) == 'MJCH ' then
  local eol = string.find(got, '\\n', 1, true)
  if not eol then return 0 end
  got = string.sub(got, eol + 1)
end
if #got < #judged or string.sub(got, 1, #judged) ~= judged then return 0 end
local existed = drop(KEYS[4])
return existed
"""

# ARGV max_size, incoming, now -> entries evicted
EVICT = COMMON + """
local used = tonumber(redis.call('GET', total) or 0) or 0
return make_room(tonumber(ARGV[1]), tonumber(ARGV[2]), '', 0, used, tonumber(ARGV[3]))
"""

# KEYS[4] entry: drop its index members if Redis expired it, or it and its index members
# if it is a chunk pointer whose chunks are gone -> 1 if dropped
FORGET = COMMON + """
if redis.call('EXISTS', KEYS[4]) == 1 then
  -- A chunk pointer whose chunks are gone (a server evicting with an allkeys-* policy
  -- took its chunk hash, or it was removed by hand) is no value either: a commit writes
  -- the chunks first, and they expire with the pointer. Before, it was listed and
  -- counted in the total (max_size) until its key was called again.
  local chunks = chunks_of(KEYS[4])
  if not chunks or redis.call('EXISTS', chunks) == 1 then return 0 end
end
drop(KEYS[4])
return 1
"""

# KEYS[4] a key named like an entry, found in the keyspace (``cleanup``); ARGV now, the
# prefix -> 1 if it was an entry of this cache missing from the index, now back in it. A
# server whose maxmemory-policy is allkeys-* evicts any key, memojar's index too (``sizes``
# is not touched by a hit, so under allkeys-lru it goes first): the entries it listed
# stayed in the server, read by every hit, but no listing, clear or max_size saw them
# again. The total is recounted after.
REINDEX = COMMON + """
local entry = KEYS[4]
if redis.call('HEXISTS', sizes, entry) == 1 then
  -- indexed, but its function's set may be what the server evicted (a function whose
  -- entries are only read, while others' writes keep sizes recent): put it back in it.
  -- Before, that function's clear removed none of them, and later calls read them.
  -- So too the lru order (allkeys-random takes any key): before, entries left out of it
  -- were never evicted by max_size, their room lost for good.
  -- (Only while the entry is there: one removed since the scan leaves no set behind. No
  -- write command unless one is missing: a read-only replica refuses any.)
  if redis.call('EXISTS', entry) == 1 then
    local set = base_of(entry) .. 'entries'
    if redis.call('SISMEMBER', set, entry) == 0 then redis.call('SADD', set, entry) end
    if not redis.call('ZSCORE', lru, entry) then redis.call('ZADD', lru, ARGV[1], entry) end
  end
  return 0
end
local kind = redis.call('TYPE', entry)
if type(kind) == 'table' then kind = kind.ok end
if kind ~= 'string' then return 0 end
local size = redis.call('STRLEN', entry)
-- the function its name gives: after the prefix, before ':<key>'
local fn = string.sub(entry, #ARGV[2] + 1, -34)
local head = redis.call('GETRANGE', entry, 0, 511 + #fn)
-- (MJCH 1: an older memojar's pointer, "MJCH 1 <gen> <chunks> <size>\\n", no signature)
local pointed = string.match(head, '^MJCH [12] %x+ %d+ (%d+)[ \\n]')
if pointed then
  size = tonumber(pointed)
  head = string.sub(head, (string.find(head, '\\n', 1, true) or #head) + 1)
end
-- an entry's own first bytes (PROTO 5, BINBYTES, its length, "MJAR"; formats 1 to 3 of an
-- older memojar: "MJAR" and the format), so that a key of someone else's that only looks
-- like one (an empty prefix) is never taken in, nor removed. Before, the older formats'
-- were not taken in either: never listed, counted, cleared nor pruned, kept for good.
local old = string.sub(head, 1, 6)
local ident = 64  -- where the header's ident, which opens with its function, starts
if string.sub(head, 1, 3) ~= '\\128\\005B' or string.sub(head, 8, 11) ~= 'MJAR' then
  if old ~= 'MJAR\\001\\000' and old ~= 'MJAR\\002\\000' and old ~= 'MJAR\\003\\000' then
    return 0
  end
  ident = 57  -- (bare, with no lead)
end
-- an entry of this cache's, written under that name: not one of another cache whose
-- prefix starts with this one's ('memojar:team:f:<key>', read under 'memojar:' as a
-- function 'team:f', names 'f'). Before, it was taken in, then cleared, evicted and
-- counted as this cache's.
if string.sub(head, ident, ident + #fn) ~= fn .. '\\0' then return 0 end
redis.call('HSET', sizes, entry, size)
redis.call('ZADD', lru, 'NX', ARGV[1], entry)
redis.call('SADD', base_of(entry) .. 'entries', entry)
return 1
"""

# -> sets the total to the sum of the recorded sizes (no total: no entries)
RECOUNT = COMMON + """
local sum = 0
for _, size in ipairs(redis.call('HVALS', sizes)) do sum = sum + (tonumber(size) or 0) end
if redis.call('EXISTS', sizes) == 0 then
  redis.call('DEL', total)
else
  redis.pcall('SET', total, sum)  -- refused when out of memory and nothing was freed
end
return sum
"""

# KEYS[4] entry, KEYS[5] one of its chunk hashes, KEYS[6] (cleanup's) the entry's lock;
# ARGV pttl below which an uncommitted hash is orphaned, and ``mine`` from the writer of
# the hash (its own failed write) -> 1 if removed. A hash the entry points to is never
# removed, nor one of an entry whose lock is held: its writer may be alive, however old
# its chunks look (a stall, a server clock set forward). Nor, but for its writer, a key
# that is not memojar's chunks: a hash whose chunks begin as an entry does (its magic
# after the pickle's lead, or at 0 in the old formats; chunks may be shorter than that).
# Before, any key named so (``app:session:<uuid hex>:c:<16 hex>``, a string of the user's
# sharing the prefix) without an expiry was unlinked by ``prune`` and ``clear``.
REAP = COMMON + """
local first, at = '', 0
while #first < 11 and ARGV[2] ~= 'mine' do  -- the lead and the magic, over as many
  local part = redis.pcall('HGET', KEYS[5], tostring(at))  -- chunks as they take
  if type(part) ~= 'string' then break end
  first, at = first .. part, at + 1
end
if ARGV[2] ~= 'mine' and string.sub(first, 8, 11) ~= 'MJAR'
    and string.sub(first, 1, 4) ~= 'MJAR' then
  return 0
end
if chunks_of(KEYS[4]) == KEYS[5] then return 0 end
if KEYS[6] and redis.call('EXISTS', KEYS[6]) == 1 then return 0 end
local pttl = redis.call('PTTL', KEYS[5])
if pttl == -1 or (pttl >= 0 and pttl < tonumber(ARGV[1])) then
  return redis.call('UNLINK', KEYS[5])
end
return 0
"""

# KEYS[1] a function's entries set, KEYS[2] its note; ARGV note. A function without entries
# keeps no note (one that a clear removed while the note was being written stays removed).
NOTE = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('SET', KEYS[2], ARGV[1]) end
"""

# KEYS[1] the stats hash, KEYS[2] the merging store's marker; ARGV the merge's nonce, the
# marker's px, then field, amount pairs (HINCRBYFLOAT for the ``saved`` fields) -> 1 if
# added, 0 if this merge was added already: redis-py sends a command again after a dropped
# connection (the store's ``retry``), also one the server ran before the drop, whose retry
# then finds the marker its own. The marker, the nonce of the store's last merge, also
# tells whether a merge whose every reply was lost ran (``RedisStore.merge_stats``). A field
# that is no number (set by hand) is replaced by the amount: before, the script stopped there
# with the fields before it added, and the retry of the merge added them again, every time.
MERGE = """
if redis.call('GET', KEYS[2]) == ARGV[1] then return 0 end
for i = 3, #ARGV, 2 do
  local add = 'HINCRBY'
  if string.sub(ARGV[i], -5) == 'saved' then add = 'HINCRBYFLOAT' end
  local done = redis.pcall(add, KEYS[1], ARGV[i], ARGV[i + 1])
  if type(done) == 'table' and done.err then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""

# The lock's SET NX PX, and the answer to its own retry: redis-py sends a command again after
# a dropped connection (the store's ``retry``), also one the server ran before the drop, whose
# retry then finds the lock this token's (held: renewed), not someone else's. KEYS[1] the
# lock, KEYS[2] its entry -> 0 if another holds it, else the entry as its holder found it
# (``SEEN``, for COMMIT).
ACQUIRE = SEEN + """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif held then
  return 0
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return seen(KEYS[2])
"""

# KEYS[1] a write's chunks; ARGV the first chunk, its in-flight PX: the first chunk never
# lives without an expiry. A script, not a MULTI: MULTI is @transaction, which the store
# does not ask of an ACL user (@read, @write, @scripting); before, such a user's values
# above chunk_size were never stored.
FIRST_CHUNK = """
redis.call('HSET', KEYS[1], '0', ARGV[1])
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# The notes of waits (``_redislease``). KEYS[1] ``<lock>:ws``, the set of the members noted
# for the lock, one per waiter and id behind its wait, "<id>:<the waiter's token>"; each
# member's key ``<lock>:w:<member>`` (PX the lifetime) says it is alive. A member whose key
# is gone (its waiter died: never renewed) is removed from the set by the next renewal of
# any waiter's note (RENEW_WAIT) or look at them (WAITERS). Before, a member was the id
# alone, with one key per id: a killed waiter's id stayed in the set as long as live
# waiters renewed it, and two waiters noting the same id shared its key, which the first
# to end removed under the other. (A member "<id>" of an older memojar is read the same.)
# Only NOTE_WAIT's first write (SET) is one a server out of memory refuses: renewing and
# ending a note (PEXPIRE, DEL, SREM) go on under a full server, as the leases' do.
WAIT_COMMON = """
local ws = KEYS[1]
local edge = string.sub(ws, 1, -2) .. ':'
local function prune()
  for _, m in ipairs(redis.call('SMEMBERS', ws)) do
    if redis.call('EXISTS', edge .. m) == 0 then redis.call('SREM', ws, m) end
  end
end
"""

# ARGV[1] the lifetime (ms), ARGV[2] the number n of members to note, ARGV[3..2+n] those,
# the rest members to remove
NOTE_WAIT = WAIT_COMMON + """
local n = tonumber(ARGV[2])
for i = 3, 2 + n do redis.call('SET', edge .. ARGV[i], '1', 'PX', ARGV[1]) end
for i = 3 + n, #ARGV do
  redis.call('DEL', edge .. ARGV[i])
  redis.call('SREM', ws, ARGV[i])
end
if n > 0 then
  redis.call('SADD', ws, unpack(ARGV, 3, 2 + n))
  redis.call('PEXPIRE', ws, ARGV[1])
end
return 1
"""

# ARGV[1] the lifetime (ms), ARGV[2..] a waiter's members -> those whose key was gone (to be
# noted again: the waiter stalled past their lifetime, or the server lost them)
RENEW_WAIT = WAIT_COMMON + """
local lost = {}
for i = 2, #ARGV do
  if redis.call('PEXPIRE', edge .. ARGV[i], ARGV[1]) == 0 then lost[#lost + 1] = ARGV[i] end
end
prune()
redis.call('PEXPIRE', ws, ARGV[1])
return lost
"""

# -> the members alive (their key there)
WAITERS = WAIT_COMMON + """
prune()
return redis.call('SMEMBERS', ws)
"""

# The probe of a server whose writes time out (``Breaker``'s write probe): touches no key,
# and runs only when the server runs writes. A server paused for writes (``CLIENT PAUSE
# WRITE``, as ``FAILOVER`` pauses it) holds every script without the ``no-writes`` flag, as
# it holds memojar's own (the lock, the commit), where it answers a PING at once
WRITE_PROBE = """
return 1
"""
