-- The Redis store's operations, one script run atomically by Redis, so every
-- operation on a room is all-or-nothing across any number of instances (the
-- role the room's shard lock plays in the in-memory store). The rules are the
-- in-memory store's, line for line; see src/store/memory.rs.
--
-- KEYS[1] the room's bucket's room set, sr:{B}:rooms: every key the script
-- touches is derived from it and shares its hash tag, so in a Cluster the
-- script runs on the node that holds the bucket's slot
-- (src/store/redis/keyspace.rs).
-- ARGV[1] operation, ARGV[2] room, ARGV[3] limits (16 big-endian doubles:
-- struct.unpack costs a microsecond where parsing text cost eight, on every
-- call), ARGV[4..] the operation's own arguments. Replies are arrays whose first
-- element is 'ok' or an error code.
--
-- Keys of room R in bucket B (all under the hash tag {B}):
--   sr:{B}:R:meta      hash: bytes (what the room stores), joins (join counter)
--   sr:{B}:R:peers     zset: peer -> join number (join order)
--   sr:{B}:R:p:<peer>  hash: th (token hash), epoch, last_seq, acked, returned,
--                      bytes, seen (ms), alive_until (ms, a parked poll's
--                      lease), gen (parked-poll generation)
--   sr:{B}:R:m:<peer>  list: unacknowledged messages, "<ms> <len> <from|*> <data>"
--   sr:{B}:R:backlog   list: "<ms> <len> <from> <data>"
--   sr:{B}:R:idem      hash: "<sender> <key>" -> "<ms> <bytes> <queued> <names...>"
--   sr:{B}:R:idemq     list: idem fields, oldest first
-- The bucket's: sr:{B}:rooms (set of rooms), sr:{B}:bytes, sr:{B}:mailboxes
-- (counters). The global limits add the other buckets' counts as the instance
-- last read them (0 with one bucket, so exact on a single Redis).
-- Wake-ups: PUBLISH (SPUBLISH in a Cluster) on sr:{B}:R:w:<peer> for every
-- mailbox that changed; an instance subscribes to the channels of the
-- mailboxes it has polls parked on (src/store/redis/wakeups.rs).

local op, room = ARGV[1], ARGV[2]
local TTL, MAX_MSGS, MAX_BYTES, BACKLOG_MSGS, BACKLOG_AGE, ROOM_PEERS, MAX_ROOMS,
  STORED_BYTES, OVERHEAD, NAME_SIZE, IDEM_WINDOW, MAX_RECEIPTS, SHARDED, OTHER_ROOMS,
  OTHER_BYTES, CLOCK_OFFSET = struct.unpack('>dddddddddddddddd', ARGV[3])

-- One clock for every instance: Redis's (plus an offset that only tests
-- move forward, as a paused clock does for the memory store).
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) + CLOCK_OFFSET

local ROOMS = KEYS[1]
local bucket = string.sub(ROOMS, 1, #ROOMS - #'rooms')
local BYTES, MAILBOXES = bucket .. 'bytes', bucket .. 'mailboxes'
local prefix = bucket .. room .. ':'
local META, PEERS, BACKLOG = prefix .. 'meta', prefix .. 'peers', prefix .. 'backlog'
local IDEM, IDEMQ = prefix .. 'idem', prefix .. 'idemq'
local PUBLISH = SHARDED == 1 and 'SPUBLISH' or 'PUBLISH'
local function peer_key(p) return prefix .. 'p:' .. p end
local function box_key(p) return prefix .. 'm:' .. p end

local woken = {}
-- Mailboxes that gained a message in this script.
local filled = {}

-- The reply a parked poll of p would get if it re-read now, handed to it in
-- the notification: "<gen> <next> <epoch> <returned before> <now>\n" and the
-- messages as stored, back to back (each is self-delimiting by its <len>).
-- The poll parked with everything before its cursor acknowledged, so its
-- batch is the whole mailbox. Its lease ends here, as the re-read would
-- end it, so the peer's TTL counts from its poll's reply, as in memory.
local function hand_over(p)
  local pk = peer_key(p)
  local f = redis.call('HMGET', pk, 'alive_until', 'gen', 'last_seq', 'epoch', 'returned')
  local lease = tonumber(f[1])
  if not lease or lease <= now then return '' end
  redis.call('HSET', pk, 'seen', now, 'alive_until', now, 'returned', f[3])
  return f[2] .. ' ' .. f[3] .. ' ' .. f[4] .. ' ' .. f[5] .. ' ' .. now .. '\n'
    .. table.concat(redis.call('LRANGE', box_key(p), 0, -1))
end

-- Rings each changed mailbox's doorbell; a parked poll's gets its batch.
local function publish()
  local done = {}
  for _, p in ipairs(woken) do
    if not done[p] then
      done[p] = true
      redis.call(PUBLISH, prefix .. 'w:' .. p, filled[p] and hand_over(p) or '')
    end
  end
end

local function add_bytes(n)
  if n ~= 0 then
    redis.call('HINCRBY', META, 'bytes', n)
    redis.call('INCRBY', BYTES, n)
  end
end

local function members()
  return redis.call('ZRANGE', PEERS, 0, -1)
end

-- Appends a message and marks the mailbox for a wake-up. Room events come
-- through here without a capacity check, as in the in-memory store.
local function push(p, from, data)
  local pk = peer_key(p)
  local cost = #data + OVERHEAD
  redis.call('HINCRBY', pk, 'last_seq', 1)
  redis.call('RPUSH', box_key(p), now .. ' ' .. #data .. ' ' .. (from or '*') .. ' ' .. data)
  redis.call('HINCRBY', pk, 'bytes', cost)
  add_bytes(cost)
  woken[#woken + 1] = p
  filled[p] = true
end

local function peers_event(names)
  if #names == 0 then
    return '{"type":"peers","peers":[]}'
  end
  return '{"type":"peers","peers":["' .. table.concat(names, '","') .. '"]}'
end

-- 'present', 'absent', or an error code.
local function authenticate(p, th)
  local stored = redis.call('HGET', peer_key(p), 'th')
  if not stored then return 'absent' end
  if th == '' then return 'token_missing' end
  if stored ~= th then return 'token_mismatch' end
  return 'present'
end

local function check_can_join()
  if redis.call('ZCARD', PEERS) >= ROOM_PEERS then return 'room_full' end
  if redis.call('SISMEMBER', ROOMS, room) == 0 and redis.call('SCARD', ROOMS) + OTHER_ROOMS >= MAX_ROOMS then
    return 'too_many_rooms'
  end
  return nil
end

local function expire_backlog()
  while true do
    local head = redis.call('LINDEX', BACKLOG, 0)
    if not head then return end
    local at, len = string.match(head, '^(%d+) (%d+) ')
    if now - tonumber(at) < BACKLOG_AGE then return end
    redis.call('LPOP', BACKLOG)
    add_bytes(-(tonumber(len) + OVERHEAD))
  end
end

local function expire_receipts()
  while true do
    local field = redis.call('LINDEX', IDEMQ, 0)
    if not field then return end
    local record = redis.call('HGET', IDEM, field)
    if record then
      local at, bytes = string.match(record, '^(%d+) (%d+) ')
      if now - tonumber(at) < IDEM_WINDOW then return end
      redis.call('HDEL', IDEM, field)
      add_bytes(-tonumber(bytes))
    end
    redis.call('LPOP', IDEMQ)
  end
end

-- Removes a mailbox; everyone else hears `leave` with its reason ('left' or
-- 'expired', as LeaveReason in src/wire.rs), and a poll parked on it
-- (on any instance) wakes, finds it gone, and ends empty.
local function remove(p, reason)
  local pk = peer_key(p)
  add_bytes(-tonumber(redis.call('HGET', pk, 'bytes') or 0))
  redis.call('DEL', pk, box_key(p))
  filled[p] = nil
  redis.call('ZREM', PEERS, p)
  redis.call('DECR', MAILBOXES)
  woken[#woken + 1] = p
  local left = '{"type":"leave","peer":"' .. p .. '","reason":"' .. reason .. '"}'
  for _, other in ipairs(members()) do
    push(other, nil, left)
  end
end

-- A peer drowned in room events (past twice its cap) is taken as gone.
local function evict_overflowing()
  local hard_cap = math.max(MAX_MSGS * 2, 16)
  local again = true
  while again do
    again = false
    for _, p in ipairs(members()) do
      if redis.call('LLEN', box_key(p)) > hard_cap then
        remove(p, 'expired')
        again = true
        break
      end
    end
  end
end

-- The newcomer's mailbox starts with `peers` and the backlog; everyone
-- else hears `join`.
local function join(p, th, epoch)
  local present = members()
  redis.call('HSET', peer_key(p), 'th', th, 'epoch', epoch, 'last_seq', 0, 'acked', 0,
    'returned', 0, 'bytes', 0, 'seen', now, 'alive_until', 0, 'gen', 0)
  redis.call('ZADD', PEERS, redis.call('HINCRBY', META, 'joins', 1), p)
  redis.call('INCR', MAILBOXES)
  redis.call('SADD', ROOMS, room)
  push(p, nil, peers_event(present))
  expire_backlog()
  for _, queued in ipairs(redis.call('LRANGE', BACKLOG, 0, -1)) do
    local _, len, from, data = string.match(queued, '^(%d+) (%d+) (%S+) (.*)$')
    add_bytes(-(tonumber(len) + OVERHEAD))
    push(p, from, data)
  end
  redis.call('DEL', BACKLOG)
  local joined = '{"type":"join","peer":"' .. p .. '"}'
  for _, other in ipairs(present) do
    push(other, nil, joined)
  end
  evict_overflowing()
end

local function discard_if_empty()
  if redis.call('ZCARD', PEERS) == 0 and redis.call('LLEN', BACKLOG) == 0
    and redis.call('HLEN', IDEM) == 0 then
    redis.call('DEL', META, IDEMQ)
    redis.call('SREM', ROOMS, room)
  end
end

-- Acknowledges up to `since` if the cursor can be honoured, and returns
-- {'ok', next, epoch, reset, returned_before, now, issued, gen, messages...}.
local function read(p, since, client_epoch, force_reset)
  local pk, bk = peer_key(p), box_key(p)
  local f = redis.call('HMGET', pk, 'epoch', 'last_seq', 'acked', 'returned')
  local epoch, last_seq, acked, returned = f[1], tonumber(f[2]), tonumber(f[3]), tonumber(f[4])
  local honoured = (not force_reset) and (client_epoch == '' or client_epoch == epoch)
    and since >= acked and since <= last_seq
  if honoured and since > acked then
    local freed = 0
    for _, m in ipairs(redis.call('LPOP', bk, since - acked) or {}) do
      freed = freed + tonumber(string.match(m, '^%d+ (%d+) ')) + OVERHEAD
    end
    redis.call('HINCRBY', pk, 'bytes', -freed)
    add_bytes(-freed)
    redis.call('HSET', pk, 'acked', since)
  end
  if last_seq > returned then
    redis.call('HSET', pk, 'returned', last_seq)
  end
  local out = {'ok', last_seq, epoch, honoured and 0 or 1, returned, now, 0, 0}
  for _, m in ipairs(redis.call('LRANGE', bk, 0, -1)) do
    out[#out + 1] = m
  end
  return out
end
local HEADER = 8

local function record_receipt(field, key, count, receipt)
  local old = redis.call('HGET', IDEM, field)
  if old then
    redis.call('LREM', IDEMQ, 0, field)
    add_bytes(-tonumber(string.match(old, '^%d+ (%d+) ')))
  elseif redis.call('LLEN', IDEMQ) >= MAX_RECEIPTS then
    local oldest = redis.call('LPOP', IDEMQ)
    local record = redis.call('HGET', IDEM, oldest)
    redis.call('HDEL', IDEM, oldest)
    if record then add_bytes(-tonumber(string.match(record, '^%d+ (%d+) '))) end
  end
  local bytes = #key + count * NAME_SIZE + OVERHEAD
  redis.call('HSET', IDEM, field, now .. ' ' .. bytes .. ' ' .. receipt)
  redis.call('RPUSH', IDEMQ, field)
  redis.call('SADD', ROOMS, room)
  add_bytes(bytes)
end

if op == 'send' then
  -- sender, token hash ('' = none), token hash to adopt on joining ('' = may
  -- not join), epoch for
  -- a new mailbox, to ('' = everyone else), idempotency key ('' = none), then
  -- the messages (one, or a batch stored in order, all or nothing)
  -- -> {'ok', issued, queued, fresh, delivered...}
  local sender, th, join_th, new_epoch, to, key =
    ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
  local messages, size = {}, 0
  for i = 10, #ARGV do
    messages[#messages + 1] = ARGV[i]
    size = size + #ARGV[i]
  end
  local count = #messages
  local auth = authenticate(sender, th)
  if auth ~= 'present' and auth ~= 'absent' then return {auth} end
  local field = sender .. ' ' .. key
  if auth == 'present' then
    redis.call('HSET', peer_key(sender), 'seen', now)
    if key ~= '' then
      local record = redis.call('HGET', IDEM, field)
      if record then
        local at, _, receipt = string.match(record, '^(%d+) (%d+) (.*)$')
        if now - tonumber(at) < IDEM_WINDOW then
          local out = {'ok', 0}
          for word in string.gmatch(receipt, '%S+') do
            out[#out + 1] = word
          end
          table.insert(out, 4, 0)
          return out
        end
      end
    end
  else
    -- No token hash to adopt: this request may not claim the name.
    if join_th == '' then return {'claim_refused'} end
    local refused = check_can_join()
    if refused then return {refused} end
  end

  -- Decide everything that can fail before changing anything.
  local recipients = {}
  if to ~= '' then
    if to == sender then return {'send_to_self'} end
    if not redis.call('ZSCORE', PEERS, to) then return {'no_such_peer', to} end
    recipients = {to}
  else
    for _, p in ipairs(members()) do
      if p ~= sender then recipients[#recipients + 1] = p end
    end
  end
  for _, p in ipairs(recipients) do
    local bytes = tonumber(redis.call('HGET', peer_key(p), 'bytes'))
    if redis.call('LLEN', box_key(p)) + count > MAX_MSGS
        or bytes + size + count * OVERHEAD > MAX_BYTES then
      return {'mailbox_full', p}
    end
  end
  local queued = #recipients == 0
  if queued then
    expire_backlog()
    if redis.call('LLEN', BACKLOG) + count > BACKLOG_MSGS then return {'backlog_full'} end
  end
  local cost = math.max(#recipients, 1) * (size + count * OVERHEAD)
  if tonumber(redis.call('GET', BYTES) or 0) + OTHER_BYTES + cost > STORED_BYTES then
    return {'store_full'}
  end

  local issued = 0
  if auth == 'absent' then
    join(sender, join_th, new_epoch)
    issued = 1
  end
  for _, p in ipairs(recipients) do
    for _, data in ipairs(messages) do
      push(p, sender, data)
    end
  end
  if queued then
    for _, data in ipairs(messages) do
      redis.call('RPUSH', BACKLOG, now .. ' ' .. #data .. ' ' .. sender .. ' ' .. data)
      add_bytes(#data + OVERHEAD)
    end
    redis.call('SADD', ROOMS, room)
  end
  local receipt = (queued and '1' or '0')
  for _, p in ipairs(recipients) do
    receipt = receipt .. ' ' .. p
  end
  if key ~= '' then
    record_receipt(field, key, #recipients, receipt)
  end
  publish()
  local out = {'ok', issued, queued and 1 or 0, 1}
  for _, p in ipairs(recipients) do
    out[#out + 1] = p
  end
  return out

elseif op == 'poll' then
  -- peer, token hash, token hash to adopt ('' = may not join), epoch for a
  -- new mailbox, since,
  -- client epoch ('' = none), closing (0/1), park for ms (0 = do not park)
  local p, th, join_th, new_epoch = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
  local since, client_epoch = tonumber(ARGV[8]), ARGV[9]
  local closing, park_ms = ARGV[10] == '1', tonumber(ARGV[11])
  local auth = authenticate(p, th)
  if auth ~= 'present' and auth ~= 'absent' then return {auth} end
  local issued = 0
  if auth == 'absent' then
    if closing then return {'shutting_down'} end
    if join_th == '' then return {'claim_refused'} end
    local refused = check_can_join()
    if refused then return {refused} end
    join(p, join_th, new_epoch)
    issued = 1
  end
  local pk = peer_key(p)
  redis.call('HSET', pk, 'seen', now)
  -- A cursor sent to a mailbox this very request created belongs to some
  -- earlier incarnation, whatever its number says.
  local batch = read(p, since, client_epoch, issued == 1 and since > 0)
  batch[7] = issued
  if closing and #batch == HEADER then
    publish()
    return {'shutting_down'}
  end
  if #batch == HEADER and batch[4] == 0 and park_ms > 0 and not closing then
    batch[8] = redis.call('HINCRBY', pk, 'gen', 1)
    local lease = tonumber(redis.call('HGET', pk, 'alive_until'))
    -- A live lease means a poll is parked here, perhaps on another
    -- instance: wake it so it sees it has been superseded.
    if lease > now then woken[#woken + 1] = p end
    -- The lease keeps the peer alive while parked, even if the instance
    -- holding the poll dies.
    redis.call('HSET', pk, 'alive_until', math.max(lease, now + park_ms))
  end
  publish()
  return batch

elseif op == 'wait' then
  -- A parked poll re-checks: peer, mailbox epoch, generation, since, client
  -- epoch, ending (0/1) -> {'gone'}, {'waiting'} or a batch.
  local p, mailbox_epoch, gen = ARGV[4], ARGV[5], tonumber(ARGV[6])
  local since, client_epoch, ending = tonumber(ARGV[7]), ARGV[8], ARGV[9] == '1'
  local pk = peer_key(p)
  local f = redis.call('HMGET', pk, 'epoch', 'gen')
  if f[1] ~= mailbox_epoch or tonumber(f[2]) ~= gen then return {'gone'} end
  local batch = read(p, since, client_epoch, false)
  if #batch == HEADER and batch[4] == 0 and not ending then return {'waiting'} end
  -- The poll ends: the peer's TTL counts from now.
  redis.call('HSET', pk, 'seen', now, 'alive_until', now)
  return batch

elseif op == 'release' then
  -- A parked poll whose client hung up: peer, mailbox epoch, generation.
  local p, mailbox_epoch, gen = ARGV[4], ARGV[5], tonumber(ARGV[6])
  local pk = peer_key(p)
  local f = redis.call('HMGET', pk, 'epoch', 'gen')
  if f[1] == mailbox_epoch and tonumber(f[2]) == gen then
    redis.call('HSET', pk, 'seen', now, 'alive_until', now)
  end
  return {'ok'}

elseif op == 'leave' then
  -- peer, token hash -> {'ok', left (0/1)}
  local p, th = ARGV[4], ARGV[5]
  local auth = authenticate(p, th)
  if auth == 'absent' then return {'ok', 0} end
  if auth ~= 'present' then return {auth} end
  remove(p, 'left')
  evict_overflowing()
  discard_if_empty()
  publish()
  return {'ok', 1}

elseif op == 'sweep' then
  -- -> {'ok', peers expired}. Atomic, so a peer expires exactly once
  -- however many instances sweep.
  local expired = 0
  for _, p in ipairs(members()) do
    local f = redis.call('HMGET', peer_key(p), 'seen', 'alive_until')
    local seen, lease = tonumber(f[1]), tonumber(f[2])
    if lease <= now and now - math.max(seen, lease) >= TTL then
      remove(p, 'expired')
      expired = expired + 1
    end
  end
  expire_backlog()
  expire_receipts()
  discard_if_empty()
  publish()
  return {'ok', expired}
end

return redis.error_reply('unknown operation ' .. tostring(op))
