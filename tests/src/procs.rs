//! Child processes that tests start (control plane, operator, SCIM server): each is stopped by
//! its own PID, never by name, and dies with the test binary.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::ControlPlane;

/// A child process whose output goes to a log file; stopped (SIGTERM, then SIGKILL after 10 s)
/// when [`ManagedProcess::stop`] is called or the value is dropped.
pub struct ManagedProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    /// What was started, to start it again ([`ManagedProcess::restart`]).
    command: Recipe,
}

/// Program, arguments, environment and working directory of a started command.
#[derive(Clone)]
struct Recipe {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
    dir: Option<PathBuf>,
}

impl Recipe {
    fn of(cmd: &Command) -> Self {
        Self {
            program: cmd.get_program().to_owned(),
            args: cmd.get_args().map(ToOwned::to_owned).collect(),
            envs: cmd
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned)))
                .collect(),
            dir: cmd.get_current_dir().map(Path::to_path_buf),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        for (key, value) in &self.envs {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd
    }
}

impl ManagedProcess {
    /// Starts `program args...` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[&str], log: &Path) -> anyhow::Result<Self> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        Self::spawn_command(name, cmd, log)
    }

    /// Starts a prepared command (environment, working directory already set) with its output
    /// appended to `log`.
    pub fn spawn_command(name: &str, cmd: Command, log: &Path) -> anyhow::Result<Self> {
        let command = Recipe::of(&cmd);
        let child = Self::start(name, cmd, log)?;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
            command,
        })
    }

    fn start(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Child> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let program = cmd.get_program().to_owned();
        spawn_from_lasting_thread(cmd).with_context(|| format!("starting {name} ({program:?})"))
    }

    /// Kills the process (SIGKILL, as a crash would) and starts the same command again, its
    /// output appended to the same log.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.child = Some(Self::start(&self.name, self.command.command(), &self.log)?);
        Ok(())
    }

    /// Freezes the process (SIGSTOP): it neither runs nor reads its sockets until
    /// [`ManagedProcess::resume`], as a process on a paused VM or a partitioned node.
    pub fn suspend(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), libc::SIGSTOP);
        }
    }

    /// Lets a suspended process run again (SIGCONT).
    pub fn resume(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), libc::SIGCONT);
        }
    }

    /// Name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Path of the log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends SIGTERM and returns at once (as the kubelet does when a pod is deleted): for a
    /// test that watches what the process does while it shuts down.
    pub fn terminate(&mut self) {
        if let Some(child) = self.child.as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            signal(child.id(), libc::SIGTERM);
        }
    }

    /// Sends SIGTERM and waits up to 10 s, then SIGKILL. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        signal(child.id(), libc::SIGTERM);
        // A suspended process would keep SIGTERM pending until the SIGKILL below.
        signal(child.id(), libc::SIGCONT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{} (pid {}) ignored SIGTERM; killing it",
            self.name,
            child.id()
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the process at once (SIGKILL), as a crash or node failure would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Lines of a component's log a failing test prints.
const FAILURE_LOG_LINES: usize = 60;

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        // Dropped while a test unwinds from a failed assertion: print what the component said,
        // so an intermittent failure can be diagnosed from the run that had it.
        if std::thread::panicking() {
            eprintln!(
                "\n--- {} (pid {:?}): last {FAILURE_LOG_LINES} lines of {} ---\n{}\n--- end of {} ---",
                self.name,
                self.pid(),
                self.log.display(),
                self.log_tail(FAILURE_LOG_LINES),
                self.name
            );
        }
        self.stop();
    }
}

/// Prints what `logs` returns when dropped during a failed test (a panic unwinding): for
/// components a test did not start as a [`ManagedProcess`] (pods on a node, read with kubectl).
pub struct LogsOnFailure<F: FnMut() -> String>(F);

impl<F: FnMut() -> String> LogsOnFailure<F> {
    /// A guard that prints `logs()` if the test fails while it is alive.
    pub fn new(logs: F) -> Self {
        LogsOnFailure(logs)
    }
}

impl<F: FnMut() -> String> Drop for LogsOnFailure<F> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("\n--- component logs at the failure ---\n{}", (self.0)());
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a PID we spawned and have not yet reaped, so it cannot name
        // another process.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Polls `ready` every 200 ms until it holds, for at most `timeout`; gives up early, naming it,
/// when one of `processes` has exited (what it was waiting for will then never happen).
pub(crate) fn wait_until(
    processes: &Mutex<Vec<ManagedProcess>>,
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        if let Some(dead) = processes
            .lock()
            .unwrap()
            .iter_mut()
            .find_map(|p| (!p.is_running()).then(|| p.name().to_string()))
        {
            anyhow::bail!("{dead} exited while waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    anyhow::bail!("{what} not ready after {timeout:?}")
}

/// The last lines of each process's log, for failure messages.
pub(crate) fn log_tails(processes: &Mutex<Vec<ManagedProcess>>) -> String {
    let mut logs = String::new();
    for p in processes.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        logs.push_str(&format!(
            "\n--- last lines of {} ---\n{}",
            p.log().display(),
            p.log_tail(25)
        ));
    }
    logs
}

/// Spawns `cmd` so that it dies with this process, never earlier.
///
/// PR_SET_PDEATHSIG fires when the *thread* that spawned the child exits, not the process: a child
/// spawned from a test thread, or from tokio's `spawn_blocking` pool (whose idle threads exit
/// after 10 s), would be killed long before its owner is done with it. Every child is therefore
/// spawned by one thread that lives as long as the process.
fn spawn_from_lasting_thread(mut cmd: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("process-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the process-spawner thread");
        Mutex::new(tx)
    });
    die_with_parent(&mut cmd);
    // Its own process group: a Ctrl-C at the terminal reaches the harness alone, which then
    // stops every child in order (a node needs containerd alive to remove its pods).
    cmd.process_group(0);
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("the process-spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("the process-spawner thread is gone"))?
}

/// Makes a child die (SIGKILL) with the thread that spawned it: see [`spawn_from_lasting_thread`].
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches only the calling (child) process.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

static AT_EXIT: Mutex<Vec<&'static ControlPlane>> = Mutex::new(Vec::new());

/// Stops `plane` when the process exits normally (the test harness exits through `exit`, which
/// runs atexit handlers, also after failed tests); a statically held plane is never dropped.
pub(crate) fn stop_at_exit(plane: &'static ControlPlane) {
    let mut planes = AT_EXIT.lock().unwrap_or_else(|e| e.into_inner());
    if planes.is_empty() {
        // SAFETY: registering a plain `extern "C" fn` with atexit.
        unsafe {
            libc::atexit(stop_registered_planes);
        }
    }
    planes.push(plane);
}

extern "C" fn stop_registered_planes() {
    let planes = AT_EXIT.lock().unwrap_or_else(|e| e.into_inner());
    for plane in planes.iter() {
        plane.stop();
        if std::env::var_os("KUBE_SCIM_KEEP_PLANE_DIR").is_none() {
            let _ = std::fs::remove_dir_all(plane.dir());
        }
    }
}

/// A `Key: N kB` field of a process's /proc file (`status`, `smaps_rollup`), in KiB; `key`
/// with its colon (`VmRSS:`).
pub fn proc_kib(pid: u32, file: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
