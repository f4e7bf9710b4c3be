// The page cmd/sluice/moqbrowser_test.go drives: moq-dev's stock <moq-publish>
// element publishing the browser's camera and microphone (Chromium's fakes in
// the test) to the MoQ URL and broadcast name given in the query string,
// index.html?url=http://127.0.0.1:4443/anon&name=cam1.
import "@moq/publish/element";

const query = new URLSearchParams(location.search);
const el = document.createElement("moq-publish");
el.setAttribute("url", query.get("url") ?? "");
el.setAttribute("name", query.get("name") ?? "");
el.setAttribute("source", "camera");
const preview = document.createElement("video");
preview.muted = true;
preview.autoplay = true;
el.appendChild(preview);
document.body.appendChild(el);

// What the test polls, and logs when it fails: the connection's status and,
// once a session is up, the protocol it negotiated.
window.moqState = () => {
  const established = el.connection.established.peek();
  return {
    status: el.connection.status.peek(),
    version: established ? String(established.version) : "",
  };
};
