// A small event emitter: a listener that throws is logged, never breaks the caller.

export class Emitter {
  #listeners = new Map();

  /** Subscribes; returns an unsubscribe function. */
  on(event, fn) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }
  off(event, fn) {
    this.#listeners.get(event)?.delete(fn);
  }
  emit(event, detail) {
    for (const fn of [...(this.#listeners.get(event) ?? [])]) {
      try {
        fn(detail);
      } catch (err) {
        console.error(`sync: a '${event}' listener failed`, err);
      }
    }
  }
  clear() {
    this.#listeners.clear();
  }
}
