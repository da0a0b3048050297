package store

// LockKeysForTest lets the tests lock keys as migrations do.
var LockKeysForTest = lockKeys
