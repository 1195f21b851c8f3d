"""The simulated Quoting Enclave: real DCAP v3 quote bytes under the sim PKI."""

from __future__ import annotations

import hashlib
import os

from services.attest.quote import ecdsa, layout
from services.attest.sim import pcs
from services.attest.sim.pki import SIM_CPU_SVN, SIM_PCE_SVN, SimPki


def sim_quote(pki: SimPki, report: layout.ReportBody) -> bytes:
    """Quotes `report` as Intel's QE would: the QE report certifies the
    attestation key, the PCK key signs the QE report, the attestation key
    signs header and report body, and the PCK chain travels as cert data."""
    attestation_key = ecdsa.raw_public_key(pki.keys["ak"].public_key())
    qe_auth_data = os.urandom(32)
    qe_report = layout.ReportBody(
        cpu_svn=SIM_CPU_SVN,
        misc_select=0,
        attributes=bytes([pcs.SIM_QE_ATTRIBUTES[0] | layout.ATTR_MODE64BIT])
        + pcs.SIM_QE_ATTRIBUTES[1:],
        mr_enclave=hashlib.sha256(b"s3ml simulated quoting enclave").digest(),
        mr_signer=pcs.SIM_QE_MRSIGNER,
        isv_prod_id=pcs.SIM_QE_PRODID,
        isv_svn=pcs.SIM_QE_SVN,
        report_data=hashlib.sha256(attestation_key + qe_auth_data).digest() + bytes(32),
    )
    header = layout.Header(
        version=layout.QUOTE_VERSION,
        att_key_type=layout.ATT_KEY_TYPE_ECDSA_P256,
        tee_type=0,
        qe_svn=pcs.SIM_QE_SVN,
        pce_svn=SIM_PCE_SVN,
        qe_vendor_id=layout.INTEL_QE_VENDOR_ID,
        user_data=bytes(20),
    )
    signed = header.pack() + report.pack()
    quote = layout.Quote(
        header=header,
        report=report,
        signature=ecdsa.sign_raw(pki.keys["ak"], signed),
        attestation_key=attestation_key,
        qe_report=qe_report,
        qe_report_signature=ecdsa.sign_raw(pki.keys["pck"], qe_report.pack()),
        qe_auth_data=qe_auth_data,
        cert_data_type=layout.CERT_DATA_PCK_CHAIN,
        cert_data=pki.pem("pck", "platform", "root"),
    )
    return quote.pack()
