"""Active Directory: the bind test, AD error codes, the lockout guard, the password policy."""
