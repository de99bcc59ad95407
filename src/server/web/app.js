'use strict';
// The page's logic: talks to the server's A1111-compatible API (/sdapi/v1/...).
