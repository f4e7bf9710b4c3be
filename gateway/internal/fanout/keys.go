package fanout

import (
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/pion/dtls/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// errNoDTLSConn is returned when pion's DTLS transport does not hold the
// connection where this package expects it (a pion upgrade moved it); the
// test of this file fails first.
var errNoDTLSConn = errors.New("fanout: pion's DTLS transport holds no *dtls.Conn in its conn field")

// sealer makes the SRTP context a viewer's packets are sealed with: the local
// (sending) master key and salt of the viewer's DTLS-SRTP session, exported
// from its DTLS connection (RFC 5764 §4.2) with pion/srtp's own extraction,
// under the protection profile the handshake chose. isClient is the gateway's
// DTLS role in that session.
//
// pion exposes neither the connection nor the keys (RATIONALE.md, "Keys"), so
// the connection is read from the transport's unexported conn field; nothing
// else of pion's state is touched, and the SRTP context made here is the
// gateway's own — pion's session never sends RTP on the viewer's SSRCs, so no
// key stream is used twice.
func sealer(t *webrtc.DTLSTransport, isClient bool) (*srtp.Context, error) {
	if t == nil || t.State() != webrtc.DTLSTransportStateConnected {
		return nil, errors.New("fanout: DTLS transport not connected")
	}
	conn, err := dtlsConnOf(t)
	if err != nil {
		return nil, err
	}
	dp, ok := conn.SelectedSRTPProtectionProfile()
	if !ok {
		return nil, errors.New("fanout: the DTLS handshake chose no SRTP protection profile")
	}
	profile, err := profileOf(dp)
	if err != nil {
		return nil, err
	}
	state, ok := conn.ConnectionState()
	if !ok {
		return nil, errors.New("fanout: DTLS connection state not available")
	}
	cfg := srtp.Config{Profile: profile}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, isClient); err != nil {
		return nil, fmt.Errorf("fanout: SRTP keys from DTLS: %w", err)
	}
	ctx, err := srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, profile)
	if err != nil {
		return nil, fmt.Errorf("fanout: SRTP context: %w", err)
	}
	return ctx, nil
}

// dtlsConnOf reads the DTLS transport's connection. The transport sets it
// once, under its lock, before it reports itself connected; a caller that saw
// the connected state reads it after that write.
func dtlsConnOf(t *webrtc.DTLSTransport) (*dtls.Conn, error) {
	f := reflect.ValueOf(t).Elem().FieldByName("conn")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*dtls.Conn]() {
		return nil, errNoDTLSConn
	}
	c := *(**dtls.Conn)(unsafe.Pointer(f.UnsafeAddr()))
	if c == nil {
		return nil, errNoDTLSConn
	}
	return c, nil
}

// profileOf is the SRTP profile of a DTLS use_srtp profile (the same IANA
// numbers, as pion's own mapping has them).
func profileOf(p dtls.SRTPProtectionProfile) (srtp.ProtectionProfile, error) {
	switch p {
	case dtls.SRTP_AEAD_AES_128_GCM:
		return srtp.ProtectionProfileAeadAes128Gcm, nil
	case dtls.SRTP_AEAD_AES_256_GCM:
		return srtp.ProtectionProfileAeadAes256Gcm, nil
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		return srtp.ProtectionProfileAes128CmHmacSha1_80, nil
	default:
		return 0, fmt.Errorf("fanout: SRTP protection profile %#x not supported", uint16(p))
	}
}
