-- wrk script for bench/load.py: a device's launch traffic on every connection, four update checks
-- (the signed index with If-None-Match, expected 304) to one blob download (expected 200); a 503
-- (load shed) and any other status are counted apart.
-- Arguments: INDEX_PATH ETAG BLOB_PATH CHECKS_PER_BLOB. Prints the run as one JSON line, prefixed
-- "LOAD ", with each thread's answers counted by status and latency percentiles in µs.
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    check = wrk.format("GET", args[1], { ["If-None-Match"] = args[2] })
    download = wrk.format("GET", args[3])
    every = tonumber(args[4]) + 1
    sent, not_modified, ok, shed, other = 0, 0, 0, 0, 0
end

function request()
    sent = sent + 1
    if sent % every == 0 then
        return download
    end
    return check
end

function response(status, headers, body)
    if status == 304 then
        not_modified = not_modified + 1
    elseif status == 200 then
        ok = ok + 1
    elseif status == 503 then
        shed = shed + 1
    else
        other = other + 1
    end
end

function done(summary, latency, requests)
    local nm, k, sh, o = 0, 0, 0, 0
    for _, t in ipairs(threads) do
        nm = nm + t:get("not_modified")
        k = k + t:get("ok")
        sh = sh + t:get("shed")
        o = o + t:get("other")
    end
    local e = summary.errors
    io.write(string.format(
        'LOAD {"requests":%d,"bytes":%d,"duration_us":%d,' ..
        '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
        '"not_modified":%d,"ok":%d,"shed":%d,"other":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d}\n',
        summary.requests, summary.bytes, summary.duration,
        e.connect, e.read, e.write, e.status, e.timeout, nm, k, sh, o,
        math.floor(latency:percentile(50)), math.floor(latency:percentile(99)),
        math.floor(latency:percentile(99.9))))
end
