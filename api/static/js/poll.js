// Live updates by polling the JSON API, for the pages that watch many jobs (the table, the
// compare page; one job's page follows its event stream: stream.js). The next call starts only
// after the last one ended, and a hidden tab does not poll. Returns a function that stops it.

export function poll(task, everyMs) {
  let stopped = false;
  let timer = null;
  async function tick() {
    if (stopped) return;
    if (!document.hidden) {
      try {
        const again = await task();
        if (again === false) stopped = true;
      } catch (error) {
        console.error(error);
      }
    }
    if (!stopped) timer = setTimeout(tick, everyMs);
  }
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
