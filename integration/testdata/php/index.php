<?php
// A PHP app for the exec lanes' tests under `php -S` (port mode): /pid
// answers at once, /hang never returns (the CLI server has no time limit).
header("Content-Type: text/plain");
$path = parse_url($_SERVER["REQUEST_URI"], PHP_URL_PATH);
if ($path === "/hang") {
    for (;;) {
        sleep(1);
    }
}
echo $path === "/pid" ? getmypid() : "ok";
