// The live feed from GET /api/v1/events. EventSource cannot send an
// Authorization header, so the stream is read with fetch() and parsed here.
// A lost stream is opened again with backoff; the API cannot resume from an
// index, so onOpen tells the page to re-read what it shows.

import { ApiError, authHeaders } from './api.js';

const FIRST_DELAY = 1000;
const MAX_DELAY = 30000;

export class EventStream {
  // handlers: onEvent(event), onOpen(), onLost(delayMs), onDenied(ApiError)
  constructor(handlers) {
    this.handlers = handlers;
    this.abort = null;
    this.running = false;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.run();
  }

  stop() {
    this.running = false;
    this.abort?.abort();
  }

  async run() {
    let delay = FIRST_DELAY;
    while (this.running) {
      this.abort = new AbortController();
      try {
        const resp = await fetch('/api/v1/events', {
          headers: { Accept: 'text/event-stream', ...authHeaders() },
          cache: 'no-store',
          signal: this.abort.signal,
        });
        if (resp.status === 401 || resp.status === 403) {
          const err = await ApiError.from(resp);
          // The page may have stopped the stream meanwhile, on the same
          // refusal of another request: say it once.
          if (this.running) {
            this.running = false;
            this.handlers.onDenied(err);
          }
          return;
        }
        if (resp.ok && resp.body) {
          delay = FIRST_DELAY;
          this.handlers.onOpen();
          await readEvents(resp.body, this.handlers.onEvent);
        }
      } catch {
        // lost or refused: retried below, unless stopped
      }
      if (!this.running) return;
      const wait = delay + Math.random() * delay * 0.3;
      this.handlers.onLost(wait);
      await new Promise((resolve) => setTimeout(resolve, wait));
      delay = Math.min(delay * 2, MAX_DELAY);
    }
  }
}

// readEvents parses a text/event-stream body and calls onEvent with each
// event's JSON data until the body ends.
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split('\n');
    buffer = lines.pop();
    for (const raw of lines) {
      const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      if (line === '') {
        if (data.length) dispatch(data.join('\n'), onEvent);
        data = [];
      } else if (line.startsWith('data:')) {
        data.push(line.slice(5).replace(/^ /, ''));
      }
      // "event:" repeats the data's type; ":" lines keep the stream open.
    }
  }
}

function dispatch(text, onEvent) {
  try {
    onEvent(JSON.parse(text));
  } catch (err) {
    console.warn('saga console: an event could not be read', err);
  }
}
