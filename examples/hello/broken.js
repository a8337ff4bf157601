// hello "v3": a release that cannot start, as if it shipped without its config file.
// It writes a few lines to stderr and throws while the module loads, before it listens,
// so a reload to it must fail, show these lines, and leave the running version serving.
const configPath = '/etc/hello.json';
console.error(`hello v3 starting (pid ${process.pid})`);
console.error(`loading config from ${configPath}`);
// Deliberately unconditional, so the example fails the same way on every machine.
throw new Error(`config file missing: ${configPath}`);
