-- wrk script of bench/http_bench.py: POST {"product_id": ...} with a token,
-- cycling through BENCH_PRODUCTS products BENCH-0000000... (env variables).
local token = os.getenv("BENCH_TOKEN") or ""
local products = tonumber(os.getenv("BENCH_PRODUCTS") or "1000")
local counter = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Token " .. token

request = function()
  counter = counter + 1
  local body = string.format('{"product_id": "BENCH-%07d"}', counter % products)
  return wrk.format(nil, nil, nil, body)
end

done = function(summary, latency, requests)
  io.write(string.format("BENCH_RESULT requests=%d errors_status=%d errors_other=%d duration_us=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
