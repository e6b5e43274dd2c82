/* A static, libc-free `true`: the cheapest possible exec target for spawn benchmarks.
 * Built by the benchmarks: gcc -static -nostdlib -O2 -o true true.c */
void _start(void)
{
    __asm__ volatile("mov $60, %eax\n\txor %edi, %edi\n\tsyscall");
    for (;;) {
    }
}
