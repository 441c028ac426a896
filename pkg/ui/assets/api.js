// Calls to Saga's HTTP API, with the token the user typed in. The token
// lives in session storage: it survives a reload, not the closed tab.

const TOKEN_KEY = 'saga.token';

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || '',
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value.trim()),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export function authHeaders() {
  const secret = token.get();
  return secret ? { Authorization: `Bearer ${secret}` } : {};
}

// ApiError is a refused or failed call, with the API's error code and
// message (SPEC §2: {"error":{"code","message"}}).
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  static async from(resp) {
    let code = '';
    let message = `${resp.status} ${resp.statusText}`.trim();
    try {
      const body = await resp.json();
      code = body.error?.code || '';
      message = body.error?.message || message;
    } catch {
      // not JSON: keep the status line
    }
    return new ApiError(resp.status, code, message);
  }
}

// getJSON reads one API resource. The health report answers 503 with its
// body when Saga is degraded, which is data, not an error.
export async function getJSON(path) {
  let resp;
  try {
    resp = await fetch(path, { headers: { Accept: 'application/json', ...authHeaders() }, cache: 'no-store' });
  } catch (err) {
    throw new ApiError(0, 'network', `Saga did not answer (${err.message}).`);
  }
  const degradedHealth = resp.status === 503 && path.startsWith('/api/v1/health');
  if (!resp.ok && !degradedHealth) {
    throw await ApiError.from(resp);
  }
  return {
    body: await resp.json(),
    stale: resp.headers.get('X-Saga-Stale') === 'true',
    serverTime: Date.parse(resp.headers.get('Date') || ''),
  };
}
