// The operations guide's login load test for k6 (k6 run bench/k6/login.js): 100
// virtual users post sign-ins to /v1/auth/password/login with X-Tenant-ID for a
// minute. Against guard's defaults, most answers are 429 (rate limited) or 403
// (address blocked after failed sign-ins), each with Retry-After; none may be a 5xx.
// bench/login_flood.sh runs the same load with wrk, for machines without k6.
//
//   GUARD_URL=http://127.0.0.1:8080 TENANT=default k6 run bench/k6/login.js
import http from 'k6/http';
import { check } from 'k6';

export const options = {
  vus: 100,
  duration: __ENV.DURATION || '60s',
  thresholds: {
    // Refusals are the expected answers; server errors are not.
    'checks{check:no server error}': ['rate==1.0'],
  },
};

const base = __ENV.GUARD_URL || 'http://127.0.0.1:8080';
const tenant = __ENV.TENANT || 'default';

export default function () {
  const body = JSON.stringify({ email: `victim${__ITER % 1000}@example.com`, password: `guess ${__ITER}` });
  const res = http.post(`${base}/v1/auth/password/login`, body, {
    headers: { 'Content-Type': 'application/json', 'X-Tenant-ID': tenant },
  });
  check(res, {
    'no server error': (r) => r.status < 500,
    'refusals say when to retry': (r) => ![429, 403, 423].includes(r.status) || r.headers['Retry-After'] !== undefined,
    'rate limits are described': (r) => r.status !== 429 || r.headers['Ratelimit-Remaining'] !== undefined,
  });
}
