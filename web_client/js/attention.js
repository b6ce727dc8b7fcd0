// Getting a busy person's attention: a desktop notification (with permission) and a short
// beep generated with WebAudio, so no sound file is needed.

let audio = null;

export function beep(frequency = 880, ms = 180) {
  try {
    audio = audio || new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "sine";
    osc.frequency.value = frequency;
    gain.gain.setValueAtTime(0.0001, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.2, audio.currentTime + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + ms / 1000);
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + ms / 1000 + 0.02);
  } catch {
    // No audio device (or autoplay refused before any click): the visual cue still shows.
  }
}

export function notificationsSupported() {
  return "Notification" in window;
}

export function needsPermission() {
  return notificationsSupported() && Notification.permission === "default";
}

export async function askPermission() {
  if (!notificationsSupported()) return "denied";
  return Notification.requestPermission();
}

export function notify(title, body) {
  if (!notificationsSupported() || Notification.permission !== "granted") return;
  // Text only: the Notification API does not render HTML.
  const n = new Notification(title, { body, tag: title, silent: true });
  setTimeout(() => n.close(), 8000);
}
