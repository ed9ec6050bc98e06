"""The Lua scripts the limiter runs in Redis (``access/limiter.py``): one call checks and counts
both windows of a call, another reads them."""

# Both windows' use, read inside the scripts below: the calls in the last minute (a binary
# search of the newest-first list), ms until the oldest of them leaves it, the day's calls, ms
# until the day resets. Times are Redis's, so instances whose clocks disagree share one minute.
USAGE_FUNCTION = """
local function usage(minute_key, day_key, now, minute_ms)
  local low, high, recent = 0, redis.call('LLEN', minute_key) - 1, 0
  while low <= high do
    local mid = math.floor((low + high) / 2)
    if tonumber(redis.call('LINDEX', minute_key, mid)) > now - minute_ms then
      recent, low = mid + 1, mid + 1
    else
      high = mid - 1
    end
  end
  local minute_reset = 0
  if recent > 0 then
    minute_reset = tonumber(redis.call('LINDEX', minute_key, recent - 1)) + minute_ms - now
  end
  local today = tonumber(redis.call('GET', day_key) or '0')
  local day_reset = 0
  if today > 0 then
    day_reset = math.max(0, redis.call('PTTL', day_key))
  end
  return {recent, minute_reset, today, day_reset}
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""
# Both windows of a call in one round trip, atomically (Redis runs a script alone). The minute
# is a list of call times in ms, newest first and trimmed to the limit, so the limit-th entry
# is the oldest call that can still hold the window full; the day is a counter that expires a
# day after its first call. A call refused by either window counts in neither. With ARGV[5]
# set, an admitted call's answer carries the windows after it too (the REST API reports them).
HIT_SCRIPT = (
    USAGE_FUNCTION
    + """
local per_minute, per_day = tonumber(ARGV[1]), tonumber(ARGV[2])
local minute_ms, day_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local oldest = tonumber(redis.call('LINDEX', KEYS[1], per_minute - 1))
if oldest and oldest > now - minute_ms then
  return {1, oldest + minute_ms - now}
end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= per_day then
  return {2, redis.call('PTTL', KEYS[2])}
end
redis.call('LPUSH', KEYS[1], now)
redis.call('LTRIM', KEYS[1], 0, per_minute - 1)
redis.call('PEXPIRE', KEYS[1], minute_ms)
if redis.call('INCR', KEYS[2]) == 1 then
  redis.call('PEXPIRE', KEYS[2], day_ms)
end
if ARGV[5] == '1' then
  local after = usage(KEYS[1], KEYS[2], now, minute_ms)
  return {0, 0, after[1], after[2], after[3], after[4]}
end
return {0, 0}
"""
)
USAGE_SCRIPT = USAGE_FUNCTION + "return usage(KEYS[1], KEYS[2], now, tonumber(ARGV[1]))"
REFUSED_BY = {1: "requests_per_minute", 2: "requests_per_day"}  # HIT_SCRIPT's first answer
