//! A small plaintext POP3 server for fault cases dovecot cannot play: its CAPA answer is given
//! (so STLS can be missing), UIDL can be refused, and it keeps every line the client sent.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

pub struct Pop3Server {
    pub port: u16,
    /// Every command line received, in order, over all connections.
    pub commands: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
pub struct Behaviour {
    /// CAPA lines (without the terminating "."); `None` answers CAPA with -ERR.
    pub capa: Option<Vec<&'static str>>,
    pub uidl: bool,
    pub messages: Vec<Vec<u8>>,
}

fn session(stream: TcpStream, b: Behaviour, log: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    out.write_all(b"+OK test-pop3 ready\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        if let Ok(mut l) = log.lock() {
            l.push(cmd.clone());
        }
        let upper = cmd.to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or("");
        let reply = match verb {
            "CAPA" => match &b.capa {
                Some(c) => format!("+OK\r\n{}\r\n.\r\n", c.join("\r\n")),
                None => "-ERR unknown command\r\n".into(),
            },
            "USER" | "PASS" => "+OK\r\n".into(),
            "STAT" => format!("+OK {} 100\r\n", b.messages.len()),
            "UIDL" if b.uidl => {
                let mut r = "+OK\r\n".to_string();
                for i in 1..=b.messages.len() {
                    r.push_str(&format!("{i} u{i}\r\n"));
                }
                r + ".\r\n"
            }
            "LIST" => {
                let mut r = "+OK\r\n".to_string();
                for (i, m) in b.messages.iter().enumerate() {
                    r.push_str(&format!("{} {}\r\n", i + 1, m.len()));
                }
                r + ".\r\n"
            }
            "QUIT" => {
                out.write_all(b"+OK bye\r\n")?;
                return Ok(());
            }
            _ => "-ERR unknown command\r\n".into(),
        };
        out.write_all(reply.as_bytes())?;
    }
}

impl Pop3Server {
    pub fn start(b: Behaviour) -> Pop3Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let log = commands.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (b, log) = (b.clone(), log.clone());
                thread::spawn(move || session(stream, b, log));
            }
        });
        Pop3Server { port, commands }
    }

    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().map(|c| c.clone()).unwrap_or_default()
    }
}
