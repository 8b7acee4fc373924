<?php

declare(strict_types=1);

// For scripts that do not use Composer: require this file instead of
// vendor/autoload.php. It maps Wsfpm\Foo to src/Foo.php (PSR-4) and
// leaves every other namespace to other autoloaders.
spl_autoload_register(static function (string $class): void {
    $prefix = 'Wsfpm\\';
    if (strncmp($class, $prefix, strlen($prefix)) !== 0) {
        return;
    }
    $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
